//! The controller runtime (kube-runtime-like, our own): an informer cache per kind, a keyed
//! queue that never runs two reconciles of one object at once, bounded concurrency, requeue and
//! await-change actions, per-key exponential backoff with jitter written into the object's
//! status, finalizers owned by the runtime, periodic resync, external wake-ups and graceful
//! shutdown.
#![warn(missing_docs)]

mod backoff;
mod controller;
pub mod events;
mod informer;
pub mod metrics;
mod queue;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{Object, Spec};
use aos_store::{Api, Backend};

pub use backoff::Backoff;
pub use controller::{Controller, Waker};
pub use events::{EventsConfig, Recorder};
pub use informer::Reader;
pub use metrics::ControllerMetrics;

/// What to do after a successful reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Look again after this long even if nothing changes.
    Requeue(Duration),
    /// Look again only when the object changes, something wakes it, or at the periodic resync.
    AwaitChange,
}

impl Action {
    /// Look again after `d`.
    pub fn requeue(d: Duration) -> Self {
        Action::Requeue(d)
    }

    /// Look again on a change.
    pub fn await_change() -> Self {
        Action::AwaitChange
    }
}

/// A CamelCase reason for a failed reconcile, as written into conditions and `lastError`.
pub trait Reason {
    /// The reason (`StoreError`, `LayerMissing`, ...).
    fn reason(&self) -> &'static str;
}

/// What a reconciler gets besides the object.
pub struct Context<K: Spec> {
    /// Typed access to the store for this kind.
    pub api: Api<K>,
    /// The informer cache of this kind.
    pub reader: Reader<K>,
    /// The whole store, for other kinds.
    pub backend: Arc<dyn Backend>,
    /// Records what happened to this kind's objects as Events.
    pub events: Recorder,
    /// Where reconcilers time the phases of their work.
    pub metrics: ControllerMetrics,
}

/// One per kind: makes the host match an object, and undoes it on deletion. Both must be
/// idempotent; `cleanup` must tolerate `apply` never having run.
pub trait Reconciler: Send + Sync + 'static {
    /// The kind it reconciles.
    type Kind: Spec;
    /// Its errors: each says its reason, which goes into `lastError`.
    type Error: std::error::Error + Reason + Send + Sync + 'static;

    /// The finalizer the runtime adds before the first `apply` and removes after `cleanup`
    /// succeeds; `None` when deletion needs no cleanup.
    fn finalizer(&self) -> Option<&'static str> {
        None
    }

    /// Whether this node is the one to reconcile `obj` (in a unit, each node owns its share of
    /// a kind). Objects it does not own get no finalizer, no status and no `apply`/`cleanup`
    /// from it, only [`Reconciler::disowned`].
    fn owns(&self, _obj: &Object<Self::Kind>) -> bool {
        true
    }

    /// Lets go of an object another node owns: removes what this node still has of it (it
    /// moved away). Idempotent; must not write the object.
    fn disowned(
        &self,
        _obj: Arc<Object<Self::Kind>>,
        _ctx: &Context<Self::Kind>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        async { Ok(Action::AwaitChange) }
    }

    /// Makes the node match `obj` (one step at a time is fine: the action says when to look
    /// again).
    fn apply(
        &self,
        obj: Arc<Object<Self::Kind>>,
        ctx: &Context<Self::Kind>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// Undoes what `apply` made, for an object being deleted. `AwaitChange` when done (the
    /// runtime then removes the finalizer); `Requeue(d)` when not finished yet (the finalizer
    /// stays and `cleanup` runs again after `d`, or sooner when something wakes the object).
    fn cleanup(
        &self,
        _obj: Arc<Object<Self::Kind>>,
        _ctx: &Context<Self::Kind>,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send {
        async { Ok(Action::AwaitChange) }
    }
}

/// How a controller runs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Reconciles of different objects running at once.
    pub concurrency: usize,
    /// Every object is reconciled at least this often.
    pub resync: Duration,
    /// The delay before retrying a failed reconcile.
    pub backoff: Backoff,
    /// How long shutdown waits for running reconciles.
    pub shutdown_grace: Duration,
    /// Where Events go; the controller records as `<kind>-controller`: a Warning for every
    /// failed reconcile (its reason and message), and what its reconciler records.
    pub events: Recorder,
    /// Where the controller counts its reconciles and queue (registered by the caller, if
    /// anywhere).
    pub metrics: ControllerMetrics,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            concurrency: 4,
            resync: Duration::from_secs(300),
            backoff: Backoff::default(),
            shutdown_grace: Duration::from_secs(10),
            events: Recorder::disabled(),
            metrics: ControllerMetrics::default(),
        }
    }
}
