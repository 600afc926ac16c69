//! The controller loop: feeds the queue from the informer, wake-ups, delays and resync; runs
//! reconciles with bounded concurrency; owns finalizers and the backoff bookkeeping in status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{Object, Spec, Status as _};
use aos_store::{Api, Backend, StoreError};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::informer::{self, Reader};
use crate::queue::Queue;
use crate::{Action, Context, ControllerConfig, Reason, Reconciler};

/// Wakes keys of a controller from outside (runtime events, timers).
/// Wakes objects of one controller from outside the store (task events, probes).
#[derive(Clone, Debug)]
pub struct Waker(mpsc::UnboundedSender<String>);

impl Waker {
    /// Queues a reconcile of `name` (merged with one already queued).
    pub fn wake(&self, name: &str) {
        let _ = self.0.send(name.to_string());
    }
}

type Extra = Box<
    dyn FnOnce(mpsc::UnboundedSender<String>, CancellationToken) -> BoxFuture<'static, ()> + Send,
>;

/// Runs one [`Reconciler`] over the objects of its kind.
pub struct Controller<R: Reconciler> {
    reconciler: Arc<R>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    reader: Reader<R::Kind>,
    wake_tx: mpsc::UnboundedSender<String>,
    wake_rx: mpsc::UnboundedReceiver<String>,
    extra: Vec<Extra>,
}

/// How a reconcile ended, for the scheduler.
enum Outcome {
    Done(Action),
    Failed(Duration),
    Absent,
}

/// Errors of the runtime's own steps (finalizers, status), reported like reconcile errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RuntimeError(#[from] StoreError);

impl Reason for RuntimeError {
    fn reason(&self) -> &'static str {
        "StoreError"
    }
}

impl<R: Reconciler> Controller<R> {
    /// A controller of `reconciler` on the store `backend`.
    pub fn new(reconciler: R, backend: Arc<dyn Backend>, config: ControllerConfig) -> Self {
        let (wake_tx, wake_rx) = mpsc::unbounded_channel();
        Controller {
            reconciler: Arc::new(reconciler),
            backend,
            config,
            reader: Reader::default(),
            wake_tx,
            wake_rx,
            extra: Vec::new(),
        }
    }

    /// A handle that wakes keys of this controller.
    pub fn waker(&self) -> Waker {
        Waker(self.wake_tx.clone())
    }

    /// The informer cache of this controller's kind.
    pub fn reader(&self) -> Reader<R::Kind> {
        self.reader.clone()
    }

    /// Also reconciles the keys `map` returns whenever an object of kind `K2` changes.
    pub fn watches<K2: Spec>(
        mut self,
        map: impl Fn(&Object<K2>) -> Vec<String> + Send + Sync + 'static,
    ) -> Self {
        let api = Api::<K2>::new(self.backend.clone());
        let map: informer::KeyMap<K2> = Arc::new(map);
        self.extra.push(Box::new(move |tx, stop| {
            Box::pin(informer::run_mapped(api, map, tx, stop))
        }));
        self
    }

    /// Runs until `shutdown` is cancelled, then waits up to the grace for running reconciles.
    pub async fn run(self, shutdown: CancellationToken) {
        let Controller {
            reconciler,
            backend,
            config,
            reader,
            wake_tx,
            mut wake_rx,
            extra,
        } = self;
        let source = format!("{}-controller", R::Kind::KIND.to_ascii_lowercase());
        let events = config.events.with_source(&source);
        let kind = R::Kind::KIND;
        let api = Api::<R::Kind>::new(backend.clone());
        let stop = shutdown.child_token();
        let (key_tx, mut key_rx) = mpsc::unbounded_channel();
        let mut background = JoinSet::new();
        background.spawn(informer::run(
            api.clone(),
            reader.clone(),
            key_tx,
            stop.clone(),
        ));
        for e in extra {
            background.spawn(e(wake_tx.clone(), stop.clone()));
        }
        let ctx = Arc::new(Context {
            api,
            reader: reader.clone(),
            backend,
            events,
            metrics: config.metrics.clone(),
        });
        let mut queue = Queue::default();
        let mut failures: HashMap<String, u32> = HashMap::new();
        let mut workers: JoinSet<(String, Outcome)> = JoinSet::new();
        let mut resync = tokio::time::interval_at(Instant::now() + config.resync, config.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::debug!(kind, "controller started");
        loop {
            while workers.len() < config.concurrency.max(1) {
                let Some(key) = queue.pop() else { break };
                let (r, ctx) = (reconciler.clone(), ctx.clone());
                let failed = failures.get(&key).copied().unwrap_or(0);
                let backoff = config.backoff;
                let metrics = config.metrics.clone();
                workers.spawn(async move {
                    let started = Instant::now();
                    let outcome = reconcile_key(&*r, &ctx, &key, failed, backoff).await;
                    if !matches!(outcome, Outcome::Absent) {
                        let ok = matches!(outcome, Outcome::Done(_));
                        metrics.reconciled(kind, ok, started.elapsed().as_secs_f64());
                    }
                    (key, outcome)
                });
            }
            config.metrics.queue(kind, queue.depth(), failures.len());
            let next_due = queue.next_due();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(k) = key_rx.recv() => queue.add(&k),
                Some(k) = wake_rx.recv() => queue.add(&k),
                Some(done) = workers.join_next(), if !workers.is_empty() => {
                    let Ok((key, outcome)) = done else { continue };
                    queue.done(&key);
                    match outcome {
                        Outcome::Done(action) => {
                            failures.remove(&key);
                            if let Action::Requeue(d) = action {
                                queue.add_after(&key, Instant::now() + d);
                            }
                        }
                        Outcome::Failed(delay) => {
                            *failures.entry(key.clone()).or_default() += 1;
                            queue.add_after(&key, Instant::now() + delay);
                        }
                        Outcome::Absent => {
                            failures.remove(&key);
                        }
                    }
                }
                _ = sleep_until(next_due) => queue.promote_due(Instant::now()),
                _ = resync.tick() => {
                    for k in reader.keys() {
                        queue.add(&k);
                    }
                }
            }
        }
        stop.cancel();
        let drain = async { while workers.join_next().await.is_some() {} };
        if tokio::time::timeout(config.shutdown_grace, drain)
            .await
            .is_err()
        {
            tracing::warn!(
                kind,
                "reconciles still running after the shutdown grace; aborting them"
            );
        }
        workers.abort_all();
        background.abort_all();
        tracing::debug!(kind, "controller stopped");
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One reconcile of one key, with the runtime's bookkeeping around it.
async fn reconcile_key<R: Reconciler>(
    r: &R,
    ctx: &Context<R::Kind>,
    key: &str,
    failed_before: u32,
    backoff: crate::Backoff,
) -> Outcome {
    let Some(obj) = ctx.reader.get(key) else {
        return Outcome::Absent;
    };
    if !r.owns(&obj) {
        // Another node's object: no finalizer, no status; only what is left of it here goes.
        let span = tracing::info_span!("disowned", kind = R::Kind::KIND, name = key);
        return match r.disowned(obj, ctx).instrument(span).await {
            Ok(action) => Outcome::Done(action),
            Err(e) => {
                tracing::warn!(kind = R::Kind::KIND, name = key, reason = e.reason(), error = %e, "failed to let go of another node's object");
                Outcome::Failed(backoff.delay(failed_before + 1))
            }
        };
    }
    let span = tracing::info_span!(
        "reconcile",
        kind = R::Kind::KIND,
        name = key,
        generation = obj.metadata.generation
    );
    async move {
        let result = run_once(r, ctx, obj.clone()).await;
        match result {
            Ok(None) => Outcome::Absent,
            Ok(Some(action)) => {
                let generation = obj.metadata.generation;
                let write = ctx
                    .api
                    .update_status(key, |s| {
                        let c = s.common_mut();
                        c.consecutive_failures = 0;
                        c.next_retry_at = None;
                        c.last_error = None;
                        if obj.metadata.deletion_timestamp.is_none() {
                            c.observed_generation = generation;
                        }
                    })
                    .await;
                match write {
                    Ok(_) => Outcome::Done(action),
                    Err(e) if e.is_not_found() => Outcome::Absent,
                    Err(e) => {
                        tracing::warn!(error = %e, "failed to record the reconcile in status");
                        Outcome::Failed(backoff.delay(failed_before + 1))
                    }
                }
            }
            Err((reason, message)) => {
                let failures = failed_before + 1;
                let delay = backoff.delay(failures);
                tracing::warn!(reason, error = %message, failures, retry_in = ?delay, "reconcile failed");
                ctx.events.warning(&obj, reason, message.clone());
                let retry_at = chrono::Utc::now()
                    + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
                let _ = ctx
                    .api
                    .update_status(key, |s| {
                        let c = s.common_mut();
                        c.consecutive_failures = failures;
                        c.next_retry_at = Some(retry_at);
                        c.last_error = Some(format!("{reason}: {message}"));
                    })
                    .await;
                Outcome::Failed(delay)
            }
        }
    }
    .instrument(span)
    .await
}

fn fail<E: std::error::Error + Reason>(e: E) -> (&'static str, String) {
    (e.reason(), e.to_string())
}

/// Finalizer handling, then apply or cleanup. `Ok(None)`: the object went away meanwhile.
async fn run_once<R: Reconciler>(
    r: &R,
    ctx: &Context<R::Kind>,
    obj: Arc<Object<R::Kind>>,
) -> Result<Option<Action>, (&'static str, String)> {
    let name = obj.metadata.name.clone();
    let finalizer = r.finalizer();
    if obj.metadata.deletion_timestamp.is_some() {
        let Some(f) = finalizer else { return Ok(None) };
        if !obj.metadata.finalizers.iter().any(|x| x == f) {
            return Ok(None);
        }
        let action = r.cleanup(obj.clone(), ctx).await.map_err(fail)?;
        // Not finished yet: the finalizer stays, and the cleanup runs again.
        if let Action::Requeue(_) = action {
            return Ok(Some(action));
        }
        // Remove ours from the latest list, so that others' finalizers are kept.
        let Some(latest) = ctx
            .api
            .get_opt(&name)
            .await
            .map_err(|e| fail(RuntimeError(e)))?
        else {
            return Ok(None);
        };
        let rest: Vec<String> = latest
            .metadata
            .finalizers
            .iter()
            .filter(|x| *x != f)
            .cloned()
            .collect();
        let left = ctx
            .api
            .set_finalizers(&name, rest, Some(latest.metadata.resource_version))
            .await
            .map_err(|e| fail(RuntimeError(e)))?;
        tracing::debug!("cleanup done, finalizer removed");
        return Ok(left.map(|_| action));
    }
    let mut obj = obj;
    if let Some(f) = finalizer {
        if !obj.metadata.finalizers.iter().any(|x| x == f) {
            let mut with = obj.metadata.finalizers.clone();
            with.push(f.to_string());
            let updated = ctx
                .api
                .set_finalizers(&name, with, Some(obj.metadata.resource_version))
                .await
                .map_err(|e| fail(RuntimeError(e)))?;
            match updated {
                Some(o) => obj = Arc::new(o),
                None => return Ok(None),
            }
        }
    }
    r.apply(obj, ctx).await.map(Some).map_err(fail)
}
