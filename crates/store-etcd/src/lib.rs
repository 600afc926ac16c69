//! The etcd backend of the store, for a unit of several nodes that share one desired state the
//! way kubelets share the API server's etcd.
//!
//! Layout: one key per object, `<prefix><Kind>/<name>`, whose value is the object's JSON. The
//! store's revision is etcd's revision: an object's `resourceVersion` is its key's mod revision
//! (set on every read, never trusted from the value). Every write reads the key, plans the change
//! with [`aos_store::plan`] (the same rules as the embedded backend) and commits it in a
//! transaction that holds only if the key's mod revision is still the one read; a lost race
//! plans again. Watches ([`watch`]) resume from the last revision they delivered when a member
//! goes away, and end with `Gone` when etcd has compacted past it. The backend compacts etcd
//! itself to keep `event_log_limit` revisions, as the embedded backend bounds its event log.

mod convert;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{DynObject, Revision, Selector};
use aos_store::plan::{plan, Change, Op, Reply};
use aos_store::{Applied, Backend, ObjectList, StoreError, StoreHealth, WatchEvent};
use chrono::Utc;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, TxnOpResponse,
};
use futures::stream::BoxStream;

use convert::{decode, encode, key_of};

/// A TLS client identity and the CA that signed the members' certificates (PEM files).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// How to reach the cluster and what to keep there.
#[derive(Clone, Debug, PartialEq)]
pub struct EtcdOptions {
    /// Client URLs of the members (`http://host:2379`, or `https://` with [`EtcdTls`]).
    pub endpoints: Vec<String>,
    /// Every key of this store starts with it (several units, or tests, can share a cluster).
    pub prefix: String,
    pub tls: Option<EtcdTls>,
    /// Revisions kept for watches that resume from an older one; 0 leaves compaction to etcd
    /// (`--auto-compaction-*`).
    pub event_log_limit: u64,
    /// Largest object, in bytes of JSON (etcd's own request limit is 1.5 MiB).
    pub max_object_bytes: usize,
    /// A request that fails because a member is unreachable is tried again for this long.
    pub retry_for: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            endpoints: vec!["http://127.0.0.1:2379".into()],
            prefix: "/aos/".into(),
            tls: None,
            event_log_limit: 10_000,
            max_object_bytes: 3 << 19,
            retry_for: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(5),
        }
    }
}

pub(crate) struct Shared {
    client: Client,
    opts: EtcdOptions,
    /// The highest revision any response has shown: a watch "from now" starts after it.
    seen: AtomicI64,
    /// The revision this backend last compacted etcd to.
    compacted: AtomicI64,
    failure: Mutex<Option<String>>,
}

/// The etcd backend. Cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    shared: Arc<Shared>,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("etcd: {e}"))
}

/// Whether a failed request may succeed on another member or a little later.
pub(crate) fn transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Unknown
                | tonic::Code::Cancelled
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Aborted
        ),
        _ => false,
    }
}

fn tls_options(tls: &EtcdTls) -> Result<TlsOptions, StoreError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| StoreError::Internal(format!("{}: {e}", p.display())))
    };
    let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(&tls.ca)?));
    match (&tls.cert, &tls.key) {
        (Some(c), Some(k)) => t = t.identity(Identity::from_pem(read(c)?, read(k)?)),
        (None, None) => {}
        _ => {
            return Err(StoreError::Internal(
                "etcd TLS: a client certificate needs its key, and a key its certificate".into(),
            ))
        }
    }
    Ok(t)
}

impl Etcd {
    /// Connects and reads the current revision (so that the cluster is known to answer).
    pub async fn connect(opts: EtcdOptions) -> Result<Self, StoreError> {
        // Errors of the options are Internal: no retry mends them.
        if !opts.prefix.ends_with('/') {
            return Err(StoreError::Internal(format!(
                "etcd prefix {:?} must end with '/'",
                opts.prefix
            )));
        }
        let mut co = ConnectOptions::new()
            .with_connect_timeout(opts.connect_timeout)
            .with_timeout(opts.request_timeout)
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
        if let Some(tls) = &opts.tls {
            co = co.with_tls(tls_options(tls)?);
        }
        let client = Client::connect(&opts.endpoints, Some(co))
            .await
            .map_err(unavailable)?;
        let etcd = Etcd {
            shared: Arc::new(Shared {
                client,
                opts,
                seen: AtomicI64::new(0),
                compacted: AtomicI64::new(0),
                failure: Mutex::new(None),
            }),
        };
        etcd.revision().await?;
        Ok(etcd)
    }

    fn prefix(&self) -> &str {
        &self.shared.opts.prefix
    }

    fn saw(&self, rev: i64) {
        self.shared.seen.fetch_max(rev, Ordering::SeqCst);
    }

    /// Runs `f` until it succeeds, fails for good, or transient failures last `retry_for`.
    async fn retry<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(20);
        loop {
            match f(self.shared.client.clone()).await {
                Ok(v) => {
                    self.set_failure(None);
                    return Ok(v);
                }
                Err(e) if transient(&e) && start.elapsed() < self.shared.opts.retry_for => {
                    tracing::debug!(error = %e, what, "etcd request failed; trying again");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => {
                    let err = unavailable(format!("{what}: {e}"));
                    if transient(&e) {
                        self.set_failure(Some(err.to_string()));
                    }
                    return Err(err);
                }
            }
        }
    }

    fn set_failure(&self, f: Option<String>) {
        let mut cur = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *cur != f {
            *cur = f;
        }
    }

    /// The object under `key` (its resourceVersion set to the key's mod revision) and the
    /// revision it was read at. `serializable` reads the member's own copy without asking the
    /// leader (it may be behind: only for reads a compare-and-swap checks anyway).
    async fn read(
        &self,
        key: &str,
        serializable: bool,
    ) -> Result<(Option<DynObject>, i64), StoreError> {
        let resp = self
            .retry("get", |mut c| {
                let key = key.to_string();
                let opts = serializable.then(|| GetOptions::new().with_serializable());
                async move { c.get(key, opts).await }
            })
            .await?;
        let rev = resp.header().map_or(0, |h| h.revision());
        self.saw(rev);
        let obj = match resp.kvs().first() {
            Some(kv) => Some(decode(kv)?),
            None => None,
        };
        Ok((obj, rev))
    }

    /// Plans `op` against the stored object and commits it if the object is still the one
    /// read. The first read is the member's own copy; when the object moved meanwhile (or
    /// the copy was behind), the failed transaction hands back the current object and the write
    /// is planned again on it.
    async fn write(&self, op: Op, dry_run: bool) -> Result<Reply, StoreError> {
        let key = key_of(self.prefix(), op.kind(), op.name());
        // Whether `cur` is known to be current (a linearizable read or a transaction's).
        let mut current = dry_run;
        let (mut cur, mut rev) = self.read(&key, !current).await?;
        loop {
            let guard = match &cur {
                Some(o) => Compare::mod_revision(key.clone(), CompareOp::Equal, o_rev(o)),
                None => Compare::version(key.clone(), CompareOp::Equal, 0),
            };
            let planned = plan(&op, cur.take(), rev as Revision + 1, Utc::now());
            // No write to check it: an error or a no-op must be planned on the current object.
            let unchecked = planned
                .as_ref()
                .map_or(true, |p| matches!(p.change, Change::None));
            if unchecked && !current {
                (cur, rev) = self.read(&key, false).await?;
                current = true;
                continue;
            }
            let planned = planned?;
            if dry_run {
                return Ok(planned.reply);
            }
            let action = match &planned.change {
                Change::None => return Ok(planned.reply),
                Change::Put(obj, _) => {
                    let value = encode(obj)?;
                    let max = self.shared.opts.max_object_bytes;
                    if value.len() > max {
                        return Err(StoreError::too_large(value.len(), max));
                    }
                    TxnOp::put(key.clone(), value, None)
                }
                Change::Remove(_) => TxnOp::delete(key.clone(), None),
            };
            let resp = self
                .retry("txn", |mut c| {
                    let txn = Txn::new()
                        .when([guard.clone()])
                        .and_then([action.clone()])
                        .or_else([TxnOp::get(key.clone(), None)]);
                    async move { c.txn(txn).await }
                })
                .await?;
            let txn_rev = resp.header().map_or(0, |h| h.revision());
            self.saw(txn_rev);
            if resp.succeeded() {
                self.compact_after(txn_rev).await;
                return Ok(with_revision(planned.reply, txn_rev));
            }
            rev = txn_rev;
            current = true;
            cur = match resp.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().map(decode).transpose()?,
                _ => return Err(StoreError::Internal("etcd txn: no current value".into())),
            };
        }
    }

    /// Keeps about `event_log_limit` revisions: once that many more have been written since the
    /// last compaction, compacts to `rev - event_log_limit`. A failure is only logged (another
    /// node may have compacted further already).
    async fn compact_after(&self, rev: i64) {
        let limit = self.shared.opts.event_log_limit as i64;
        if limit == 0 || rev - self.shared.compacted.load(Ordering::SeqCst) < 2 * limit {
            return;
        }
        let to = rev - limit;
        self.shared.compacted.fetch_max(to, Ordering::SeqCst);
        let mut c = self.shared.client.clone();
        if let Err(e) = c.compact(to, None).await {
            tracing::debug!(error = %e, revision = to, "etcd compaction did not happen");
        }
    }
}

fn o_rev(o: &DynObject) -> i64 {
    o.metadata.resource_version as i64
}

/// The reply of a committed write carries the revision etcd gave it.
fn with_revision(reply: Reply, rev: i64) -> Reply {
    let set = |mut o: DynObject| {
        o.metadata.resource_version = rev as Revision;
        o
    };
    match reply {
        Reply::Applied(a) => Reply::Applied(Applied {
            object: set(a.object),
            outcome: a.outcome,
        }),
        Reply::Object(o) => Reply::Object(set(o)),
        Reply::Maybe(o) => Reply::Maybe(o.map(set)),
    }
}

fn unexpected(r: Reply) -> StoreError {
    StoreError::Internal(format!("unexpected reply {r:?}"))
}

#[async_trait::async_trait]
impl Backend for Etcd {
    async fn get(&self, kind: &str, name: &str) -> Result<DynObject, StoreError> {
        self.read(&key_of(self.prefix(), kind, name), false)
            .await?
            .0
            .ok_or_else(|| StoreError::not_found(kind, name))
    }

    async fn list(&self, kind: &str, selector: &Selector) -> Result<ObjectList, StoreError> {
        let from = format!("{}{kind}/", self.prefix());
        let resp = self
            .retry("list", |mut c| {
                let from = from.clone();
                async move { c.get(from, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = resp.header().map_or(0, |h| h.revision());
        self.saw(revision);
        let mut items = Vec::new();
        for kv in resp.kvs() {
            let obj = decode(kv)?;
            if selector.matches(&obj.metadata.labels) {
                items.push(obj);
            }
        }
        Ok(ObjectList {
            items,
            revision: revision as Revision,
        })
    }

    async fn apply(&self, obj: DynObject, dry_run: bool) -> Result<Applied, StoreError> {
        match self.write(Op::Apply(obj), dry_run).await? {
            Reply::Applied(a) => Ok(a),
            r => Err(unexpected(r)),
        }
    }

    async fn create(&self, obj: DynObject) -> Result<DynObject, StoreError> {
        match self.write(Op::Create(obj), false).await? {
            Reply::Applied(a) => Ok(a.object),
            r => Err(unexpected(r)),
        }
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
        match self.write(op, false).await? {
            Reply::Object(o) => Ok(o),
            r => Err(unexpected(r)),
        }
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
        match self.write(op, false).await? {
            Reply::Maybe(o) => Ok(o),
            r => Err(unexpected(r)),
        }
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
        match self.write(op, dry_run).await? {
            Reply::Maybe(o) => Ok(o),
            r => Err(unexpected(r)),
        }
    }

    fn watch(
        &self,
        kind: Option<&str>,
        since: Option<Revision>,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        let from = format!(
            "{}{}",
            self.prefix(),
            kind.map(|k| format!("{k}/")).unwrap_or_default()
        );
        let since = since.map_or_else(|| self.shared.seen.load(Ordering::SeqCst), |r| r as i64);
        watch::start(self.shared.clone(), from, since)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        // Any read carries the revision in its header; this key never exists.
        let (_, rev) = self
            .read(&format!("{}\u{0}revision", self.prefix()), false)
            .await?;
        Ok(rev as Revision)
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            failure: self
                .shared
                .failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            damaged: Vec::new(),
        }
    }
}
