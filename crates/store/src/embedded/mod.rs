//! The embedded backend: one redb file (or memory, for tests). Writes go through one writer
//! thread ([`writer`]) that commits whatever has queued up in one durable transaction (group
//! commit) and acknowledges each write only after that commit; reads use concurrent read
//! transactions. Every record carries a checksum ([`record`]); the file is checked at open
//! ([`check`]); a file that fails under the writer (a full disk) is reopened once it can be,
//! using a reserve of space kept beside it, and the store's [`StoreHealth`] says what is wrong
//! meanwhile.

mod check;
mod record;
mod shared;
mod submit;
mod writer;

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use aos_api::{DynObject, Revision, Selector};
use chrono::Utc;
use futures::stream::BoxStream;
use futures::StreamExt;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio::sync::broadcast;

pub use check::OpenReport;
pub use record::Damage;

use crate::plan::{key, plan, Op, Reply};
use crate::{Applied, Backend, DamagedRecord, ObjectList, StoreError, StoreHealth, WatchEvent};
use shared::Shared;
use writer::{Request, Writer};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";
const COMPACTED: &str = "compacted";
const EVENT_BYTES: &str = "event_bytes";

/// How to open the embedded store.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// The database file; `None` keeps everything in memory.
    pub path: Option<PathBuf>,
    /// Events kept for watches that resume from an older revision.
    pub event_log_limit: u64,
    /// Most bytes the event log holds (events carry whole objects).
    pub event_log_bytes: u64,
    /// redb page cache, in bytes.
    pub cache_size: usize,
    /// Most writes committed together in one transaction.
    pub max_batch: usize,
    /// Largest object, in bytes of JSON (Kubernetes: 1.5 MiB).
    pub max_object_bytes: usize,
    /// Space kept in a file beside the store, given back to the store when the disk is full.
    pub reserve_bytes: u64,
    /// A file larger than this is compacted at open.
    pub compact_above: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            path: None,
            event_log_limit: 10_000,
            event_log_bytes: 64 << 20,
            cache_size: 8 << 20,
            max_batch: 512,
            max_object_bytes: 3 << 19,
            reserve_bytes: 8 << 20,
            compact_above: 64 << 20,
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

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

struct Inner {
    shared: Arc<Shared>,
    tx: Option<mpsc::Sender<Request>>,
    events: broadcast::Sender<Arc<WatchEvent>>,
    writer: Option<JoinHandle<()>>,
    report: OpenReport,
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

impl Embedded {
    /// Opens (or creates) the store and checks it. A file left by a crash is recovered by redb.
    pub fn open(opts: EmbeddedOptions) -> Result<Self, StoreError> {
        let (db, created) = match &opts.path {
            Some(p) => check::open_file(p, &opts)?,
            None => (
                Database::builder()
                    .create_with_backend(redb::backends::InMemoryBackend::new())
                    .map_err(|e| StoreError::Unavailable(format!("failed to create store: {e}")))?,
                true,
            ),
        };
        let report = check::check(&db, created)?;
        let damaged = report
            .quarantined
            .iter()
            .map(|(k, why)| {
                (
                    k.clone(),
                    DamagedRecord {
                        key: k.clone(),
                        reason: why.clone(),
                        quarantined: true,
                    },
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            opts: opts.clone(),
            db: RwLock::new(Some(Arc::new(db))),
            failure: Mutex::new(None),
            damaged: Mutex::new(damaged),
        });
        shared.ensure_reserve();
        let (tx, rx) = mpsc::channel();
        let (events, _) = broadcast::channel(16384);
        let writer = Writer {
            shared: shared.clone(),
            events: events.clone(),
            limit: opts.event_log_limit.max(1),
            byte_limit: opts.event_log_bytes.max(1 << 20),
            max_batch: opts.max_batch.max(1),
            max_object: opts.max_object_bytes,
        };
        let handle = std::thread::Builder::new()
            .name("aos-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(internal)?;
        Ok(Embedded {
            inner: Arc::new(Inner {
                shared,
                tx: Some(tx),
                events,
                writer: Some(handle),
                report,
            }),
        })
    }

    /// What opening found: a new file, how many objects, what was quarantined.
    pub fn report(&self) -> &OpenReport {
        &self.inner.report
    }

    fn read_current(
        &self,
        kind: &str,
        name: &str,
    ) -> Result<(Option<DynObject>, Revision), StoreError> {
        let db = self.inner.shared.db()?;
        let r = db.begin_read().map_err(internal)?;
        let objects = r.open_table(OBJECTS).map_err(internal)?;
        let meta = r.open_table(META).map_err(internal)?;
        let rev = meta
            .get(REVISION)
            .map_err(internal)?
            .map(|v| v.value())
            .unwrap_or(0);
        let k = key(kind, name);
        let obj = match objects.get(k.as_str()).map_err(internal)? {
            None => None,
            Some(v) => Some(
                record::object(&k, v.value())
                    .map_err(|d| self.inner.shared.damaged(&k, &d))?
                    .0,
            ),
        };
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
        let db = self.inner.shared.db()?;
        let r = db.begin_read().map_err(internal)?;
        let meta = r.open_table(META).map_err(internal)?;
        let value = |k: &str| -> Result<u64, StoreError> {
            Ok(meta
                .get(k)
                .map_err(internal)?
                .map(|v| v.value())
                .unwrap_or(0))
        };
        let (compacted, rev) = (value(COMPACTED)?, value(REVISION)?);
        let gone = StoreError::Gone {
            requested: since,
            oldest: compacted,
        };
        if since < compacted {
            return Err(gone);
        }
        let log = r.open_table(EVENTS).map_err(internal)?;
        let mut out = Vec::new();
        for entry in log.range(since + 1..).map_err(internal)? {
            let (_, v) = entry.map_err(internal)?;
            // A damaged event cannot be replayed: the watcher lists again instead.
            let Ok((json, _)) = record::open(v.value()) else {
                return Err(gone);
            };
            let ev: WatchEvent = serde_json::from_slice(json).map_err(|_| gone.clone())?;
            if kind.is_none_or(|k| ev.object.kind == k) {
                out.push(ev);
            }
        }
        Ok((out, rev.max(since)))
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
        let db = self.inner.shared.db()?;
        let r = db.begin_read().map_err(internal)?;
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
            let (k, v) = entry.map_err(internal)?;
            // A record damaged since open is reported and skipped: the rest of its kind works.
            let Ok((obj, _)) = record::object(k.value(), v.value())
                .map_err(|d| self.inner.shared.damaged(k.value(), &d))
            else {
                continue;
            };
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

    async fn create(&self, obj: DynObject) -> Result<DynObject, StoreError> {
        Ok(expect_applied(self.submit(Op::Create(obj)).await?)?.object)
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

    async fn delete_many(
        &self,
        targets: &[(String, String)],
        dry_run: bool,
    ) -> Vec<Result<Option<DynObject>, StoreError>> {
        let ops: Vec<Op> = targets
            .iter()
            .map(|(kind, name)| Op::Delete {
                kind: kind.clone(),
                name: name.clone(),
                rv: None,
            })
            .collect();
        let replies = if dry_run {
            ops.iter().map(|op| self.dry_run(op)).collect()
        } else {
            self.submit_all(ops).await
        };
        replies.into_iter().map(|r| expect_maybe(r?)).collect()
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

    fn health(&self) -> StoreHealth {
        let s = &self.inner.shared;
        StoreHealth {
            failure: s.failure.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            damaged: s
                .damaged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .cloned()
                .collect(),
        }
    }
}
