//! The embedded backend: one redb file (or memory, for tests). Writes go through one writer
//! thread that commits whatever has queued up in one durable transaction (group commit) and
//! acknowledges each write only after that commit; reads use concurrent read transactions.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use aos_api::{DynObject, Revision, Selector};
use chrono::Utc;
use futures::stream::BoxStream;
use futures::StreamExt;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{broadcast, oneshot};

use crate::plan::{key, plan, Change, Op, Reply};
use crate::{Applied, Backend, EventType, ObjectList, StoreError, WatchEvent};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
const COMPACTED: &str = "compacted";

/// How to open the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The database file; `None` keeps everything in memory.
    pub path: Option<PathBuf>,
    /// Events kept for watches that resume from an older revision.
    pub event_log_limit: u64,
    /// redb page cache, in bytes.
    pub cache_size: usize,
    /// Most writes committed together in one transaction.
    pub max_batch: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            path: None,
            event_log_limit: 10_000,
            cache_size: 8 << 20,
            max_batch: 512,
        }
    }
}

impl EmbeddedOptions {
    pub fn in_memory() -> Self {
        Self::default()
    }

    pub fn file(path: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            path: Some(path.into()),
            ..Self::default()
        }
    }
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

struct Inner {
    db: Arc<Database>,
    tx: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// The embedded store. Cheap to clone; the file is closed when the last clone goes.
#[derive(Clone)]
pub struct Embedded {
    inner: Arc<Inner>,
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

fn decode(bytes: &[u8]) -> Result<DynObject, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| internal(format!("failed to decode object: {e}")))
}

impl Embedded {
    /// Opens (or creates) the store. A file left by a crash is recovered by redb.
    pub fn open(opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let mut builder = Database::builder();
        builder.set_cache_size(opts.cache_size);
        let db = match &opts.path {
            Some(p) => builder.create(p).map_err(|e| {
                StoreError::Unavailable(format!("failed to open store {}: {e}", p.display()))
            })?,
            None => builder
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(|e| StoreError::Unavailable(format!("failed to create store: {e}")))?,
        };
        let txn = db.begin_write().map_err(internal)?;
        {
            txn.open_table(OBJECTS).map_err(internal)?;
            txn.open_table(EVENTS).map_err(internal)?;
            txn.open_table(META).map_err(internal)?;
        }
        txn.commit().map_err(internal)?;
        let db = Arc::new(db);
        let (tx, rx) = mpsc::channel();
        let (events, _) = broadcast::channel(16384);
        let writer = Writer {
            db: db.clone(),
            events: events.clone(),
            limit: opts.event_log_limit.max(1),
            max_batch: opts.max_batch.max(1),
        };
        let handle = std::thread::Builder::new()
            .name("aos-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(internal)?;
        Ok(Embedded {
            inner: Arc::new(Inner {
                db,
                tx: Some(tx),
                events,
                writer: Some(handle),
            }),
        })
    }

    async fn submit(&self, op: Op) -> Result<Reply, StoreError> {
        let (reply, rx) = oneshot::channel();
        let tx = self
            .inner
            .tx
            .clone()
            .ok_or_else(|| StoreError::Unavailable("store is closed".into()))?;
        let stopped = || StoreError::Unavailable("store writer has stopped".into());
        // Waiting on the blocking pool (not on the writer thread directly) tells a paused tokio
        // clock that work is in flight, so tests with `time::pause` do not jump ahead of a write.
        tokio::task::spawn_blocking(move || {
            tx.send(Request { op, reply }).map_err(|_| stopped())?;
            rx.blocking_recv().map_err(|_| stopped())?
        })
        .await
        .map_err(|e| StoreError::Internal(format!("store write task failed: {e}")))?
    }

    fn read_current(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<(Option<DynObject>, Revision), StoreError> {
        let r = self.inner.db.begin_read().map_err(internal)?;
        let objects = r.open_table(OBJECTS).map_err(internal)?;
        let meta = r.open_table(META).map_err(internal)?;
        let rev = meta
            .get(REVISION)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let obj = objects
            .get(key(kind, name).as_str())
            .map_err(internal)?
            .map(|v| decode(v.value()))
            .transpose()?;
        Ok((obj, rev))
    }

    /// Plans a write without making it (server-side dry run).
    fn dry_run(&self, op: &Op) -> Result<Reply, StoreError> {
        let (cur, rev) = self.read_current(op.kind(), op.name())?;
        Ok(plan(op, cur, rev + 1, Utc::now())?.reply)
    }

    fn replay(
        &self,
        kind: Option<&str>,
        since: Revision,
    ) -> Result<(Vec<WatchEvent>, Revision), StoreError> {
        let r = self.inner.db.begin_read().map_err(internal)?;
        let meta = r.open_table(META).map_err(internal)?;
        let compacted = meta
            .get(COMPACTED)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let rev = meta
            .get(REVISION)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        if since < compacted {
            return Err(StoreError::Gone {
                requested: since,
                oldest: compacted,
            });
        }
        let log = r.open_table(EVENTS).map_err(internal)?;
        let mut out = Vec::new();
        for entry in log.range(since + 1..).map_err(internal)? {
            let (_, v) = entry.map_err(internal)?;
            let ev: WatchEvent = serde_json::from_slice(v.value()).map_err(internal)?;
            if kind.is_none_or(|k| ev.object.kind == k) {
                out.push(ev);
            }
        }
        Ok((out, rev.max(since)))
    }
}

struct Writer {
    db: Arc<Database>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    limit: u64,
    max_batch: usize,
}

type BatchResult = (Vec<Result<Reply, StoreError>>, Vec<WatchEvent>);

impl Writer {
    fn run(self, rx: mpsc::Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            match self.commit(&batch) {
                Ok((replies, events)) => {
                    for ev in events {
                        let _ = self.events.send(Arc::new(ev));
                    }
                    for (req, reply) in batch.into_iter().zip(replies) {
                        let _ = req.reply.send(reply);
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, writes = batch.len(), "store commit failed");
                    for req in batch {
                        let _ = req.reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn commit(&self, batch: &[Request]) -> Result<BatchResult, StoreError> {
        let txn = self.db.begin_write().map_err(internal)?;
        let mut replies = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        {
            let mut objects = txn.open_table(OBJECTS).map_err(internal)?;
            let mut log = txn.open_table(EVENTS).map_err(internal)?;
            let mut meta = txn.open_table(META).map_err(internal)?;
            let mut rev = meta
                .get(REVISION)
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0);
            let start_rev = rev;
            for req in batch {
                let k = key(req.op.kind(), req.op.name());
                let current = match objects.get(k.as_str()).map_err(internal)? {
                    Some(v) => Some(decode(v.value())?),
                    None => None,
                };
                let planned = match plan(&req.op, current, rev + 1, Utc::now()) {
                    Ok(p) => p,
                    Err(e) => {
                        replies.push(Err(e));
                        continue;
                    }
                };
                let event = match planned.change {
                    Change::None => None,
                    Change::Put(obj, type_) => {
                        let bytes = serde_json::to_vec(&obj).map_err(internal)?;
                        objects
                            .insert(k.as_str(), bytes.as_slice())
                            .map_err(internal)?;
                        Some((type_, obj))
                    }
                    Change::Remove(obj) => {
                        objects.remove(k.as_str()).map_err(internal)?;
                        Some((EventType::Deleted, obj))
                    }
                };
                if let Some((type_, object)) = event {
                    rev += 1;
                    let ev = WatchEvent {
                        type_,
                        revision: rev,
                        object,
                    };
                    let bytes = serde_json::to_vec(&ev).map_err(internal)?;
                    log.insert(rev, bytes.as_slice()).map_err(internal)?;
                    events.push(ev);
                }
                replies.push(Ok(planned.reply));
            }
            if rev != start_rev {
                meta.insert(REVISION, rev).map_err(internal)?;
                let compacted = meta
                    .get(COMPACTED)
                    .map_err(internal)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                // Trim in steps of a tenth of the log, not on every write.
                if rev > compacted + self.limit + self.limit / 10 {
                    let cut = rev - self.limit;
                    log.retain_in(..=cut, |_, _| false).map_err(internal)?;
                    meta.insert(COMPACTED, cut).map_err(internal)?;
                }
            }
        }
        if events.is_empty() {
            txn.abort().map_err(internal)?;
        } else {
            txn.commit().map_err(internal)?;
        }
        Ok((replies, events))
    }
}

fn expect_applied(r: Reply) -> Result<Applied, StoreError> {
    match r {
        Reply::Applied(a) => Ok(a),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

fn expect_object(r: Reply) -> Result<DynObject, StoreError> {
    match r {
        Reply::Object(o) => Ok(o),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

fn expect_maybe(r: Reply) -> Result<Option<DynObject>, StoreError> {
    match r {
        Reply::Maybe(o) => Ok(o),
        other => Err(internal(format!("unexpected reply {other:?}"))),
    }
}

#[async_trait::async_trait]
impl Backend for Embedded {
    async fn get(&self, kind: &str, name: &str) -> Result<DynObject, StoreError> {
        self.read_current(kind, name)?
            .0
            .ok_or_else(|| StoreError::not_found(kind, name))
    }

    async fn list(&self, kind: &str, selector: &Selector) -> Result<ObjectList, StoreError> {
        let r = self.inner.db.begin_read().map_err(internal)?;
        let meta = r.open_table(META).map_err(internal)?;
        let revision = meta
            .get(REVISION)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let objects = r.open_table(OBJECTS).map_err(internal)?;
        let (lo, hi) = (format!("{kind}/"), format!("{kind}0"));
        let mut items = Vec::new();
        for entry in objects.range(lo.as_str()..hi.as_str()).map_err(internal)? {
            let (_, v) = entry.map_err(internal)?;
            let obj = decode(v.value())?;
            if selector.matches(&obj.metadata.labels) {
                items.push(obj);
            }
        }
        Ok(ObjectList { items, revision })
    }

    async fn apply(&self, obj: DynObject, dry_run: bool) -> Result<Applied, StoreError> {
        let op = Op::Apply(obj);
        expect_applied(if dry_run {
            self.dry_run(&op)?
        } else {
            self.submit(op).await?
        })
    }

    async fn update_status(
        &self,
        kind: &str,
        name: &str,
        status: serde_json::Value,
        rv: Option<Revision>,
    ) -> Result<DynObject, StoreError> {
        let op = Op::Status {
            kind: kind.into(),
            name: name.into(),
            status,
            rv,
        };
        expect_object(self.submit(op).await?)
    }

    async fn set_finalizers(
        &self,
        kind: &str,
        name: &str,
        finalizers: Vec<String>,
        rv: Option<Revision>,
    ) -> Result<Option<DynObject>, StoreError> {
        let op = Op::Finalizers {
            kind: kind.into(),
            name: name.into(),
            finalizers,
            rv,
        };
        expect_maybe(self.submit(op).await?)
    }

    async fn delete(
        &self,
        kind: &str,
        name: &str,
        rv: Option<Revision>,
        dry_run: bool,
    ) -> Result<Option<DynObject>, StoreError> {
        let op = Op::Delete {
            kind: kind.into(),
            name: name.into(),
            rv,
        };
        expect_maybe(if dry_run {
            self.dry_run(&op)?
        } else {
            self.submit(op).await?
        })
    }

    fn watch(
        &self,
        kind: Option<&str>,
        since: Option<Revision>,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        // Subscribe before reading the log so that nothing falls between the two.
        let rx = self.inner.events.subscribe();
        let kind = kind.map(str::to_string);
        let (replayed, last) = match since {
            Some(since) => match self.replay(kind.as_deref(), since) {
                Ok(r) => r,
                Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
            },
            None => match self.read_current("", "") {
                Ok((_, rev)) => (Vec::new(), rev),
                Err(e) => return futures::stream::once(async { Err(e) }).boxed(),
            },
        };
        let last = replayed.last().map_or(last, |e| e.revision.max(last));
        let live = futures::stream::unfold(Some((rx, last)), move |state| {
            let kind = kind.clone();
            async move {
                let (mut rx, mut last) = state?;
                loop {
                    match rx.recv().await {
                        Ok(ev) => {
                            if ev.revision <= last {
                                continue;
                            }
                            last = ev.revision;
                            if kind.as_deref().is_some_and(|k| ev.object.kind != k) {
                                continue;
                            }
                            return Some((Ok((*ev).clone()), Some((rx, last))));
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            let gone = StoreError::Gone {
                                requested: last,
                                oldest: last + 1,
                            };
                            return Some((Err(gone), None));
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        futures::stream::iter(replayed.into_iter().map(Ok))
            .chain(live)
            .boxed()
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.read_current("", "")?.1)
    }
}
