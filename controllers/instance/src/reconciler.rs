//! The reconcile of one Instance, level-triggered on the Instance, its Item, its Network, the
//! task's events and the probes, in four rooms: [`crate::observe`] reads, [`crate::plan`]
//! decides the one next step, [`crate::act`] carries it out through the ports, and
//! [`crate::report`] writes the status once. Deletion stops the task and removes what the
//! instance had on the node.

use std::sync::Arc;

use aos_api::condition::reason as r;
use aos_api::{InstanceSpec, Object, RuntimeType};
use aos_reconcile::{Action, Context, Reconciler, Recorder};

use crate::act::{act, Outcome};
use crate::observe::observe;
use crate::plan::{blocked_by, plan, Step};
use crate::report::{report, Report};
use crate::{recipe, InstanceEnv, InstanceError, FINALIZER};

/// The reconciler of Instances of `runtime: container`.
pub struct InstanceReconciler {
    pub(crate) env: Arc<InstanceEnv>,
}

impl InstanceReconciler {
    /// A reconciler working with `env`.
    pub fn new(env: Arc<InstanceEnv>) -> Self {
        InstanceReconciler { env }
    }

    async fn reconcile(
        &self,
        obj: &Object<InstanceSpec>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        let env = &self.env;
        let Some(mut o) = observe(env, &ctx.backend, obj).await? else {
            return Ok(Action::AwaitChange);
        };
        let made = match (o.inputs.take(), o.ids) {
            (Some(inputs), Some(ids)) => Some(recipe::build(
                &o.obj,
                inputs,
                ids,
                o.now,
                &env.defaults,
                env.permits,
            )),
            _ => None,
        };
        let step = plan(&o, made.as_ref());
        tracing::debug!(?step, "planned");
        let (recipe, blocked) = match made {
            Some(Ok(r)) => (Some(r), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let started = std::time::Instant::now();
        let outcome = act(env, &ctx.api, &o, recipe.as_ref(), &step).await?;
        let took = started.elapsed();
        let action = report(
            &ctx.api,
            Report {
                o: &o,
                recipe: recipe.as_ref(),
                blocked: blocked.as_ref().map(blocked_by),
                step: &step,
                outcome: &outcome,
                took,
                metrics: &ctx.metrics,
            },
        )
        .await?;
        record(&ctx.events, obj, &step, &outcome);
        // With the cloud away, look again when the item's offlineTTL runs out.
        let action = match recipe
            .as_ref()
            .and_then(|r| crate::plan::offline_until(&o, r))
        {
            Some(at) if at > o.now => {
                let left = (at - o.now).to_std().unwrap_or_default();
                match action {
                    Action::Requeue(d) if d <= left => action,
                    _ => Action::Requeue(left),
                }
            }
            _ => action,
        };
        // What could not be done is retried with the runtime's backoff (and shown as lastError).
        match (step, outcome, blocked) {
            (Step::RuntimeDown, ..) => Err(o
                .container
                .err()
                .map(InstanceError::Runtime)
                .unwrap_or_else(|| InstanceError::Config("the runtime is down".into()))),
            (Step::Blocked { .. }, _, Some(e)) => Err(e),
            (_, Outcome::NotStarted(e), _) => Err(e),
            _ => Ok(action),
        }
    }
}

impl Reconciler for InstanceReconciler {
    type Kind = InstanceSpec;
    type Error = InstanceError;

    fn finalizer(&self) -> Option<&'static str> {
        Some(FINALIZER)
    }

    fn owns(&self, obj: &Object<InstanceSpec>) -> bool {
        self.env.owner.owns(&obj.spec)
    }

    async fn disowned(
        &self,
        obj: Arc<Object<InstanceSpec>>,
        _ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        if obj.spec.runtime != RuntimeType::Container {
            return Ok(Action::AwaitChange);
        }
        self.let_go(&obj).await
    }

    async fn apply(
        &self,
        obj: Arc<Object<InstanceSpec>>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        // The runtime's span names the object: the steps below log inside it.
        self.reconcile(&obj, ctx).await
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<InstanceSpec>>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        if obj.spec.runtime != RuntimeType::Container {
            return Ok(Action::AwaitChange);
        }
        self.remove(&obj, ctx).await
    }
}

impl InstanceReconciler {
    /// Removes what this node still has of an Instance another node runs now (it moved, or was
    /// placed elsewhere while this node was away): its task, network attachment and files. The
    /// object is the new owner's: nothing is written to it.
    async fn let_go(&self, obj: &Object<InstanceSpec>) -> Result<Action, InstanceError> {
        let env = &self.env;
        let name = obj.name();
        let here =
            env.containers.inspect(name).await?.is_some() || env.host.paths(name).log_dir.exists();
        if !here {
            return Ok(Action::AwaitChange);
        }
        tracing::info!(node = ?obj.spec.node_name, "the instance runs on another node now: removing it here");
        Ok(match self.tear_down(obj).await? {
            Some(left) => Action::Requeue(left),
            None => Action::AwaitChange,
        })
    }

    /// What both removals do on the node: stop the task a step at a time (`Some` while it
    /// takes its grace), leave the network, remove the instance's files.
    async fn tear_down(
        &self,
        obj: &Object<InstanceSpec>,
    ) -> Result<Option<std::time::Duration>, InstanceError> {
        let env = &self.env;
        let name = obj.name();
        if let Some(left) = env.stop_step(name, grace_of(obj, env)).await? {
            return Ok(Some(left));
        }
        if let (Some(n), Some(nets)) = (&obj.spec.network, &env.networks) {
            nets.detach(name, &n.network_id).await?;
        }
        remove_files(env, name).await?;
        env.containers.release_idle().await?;
        Ok(None)
    }

    /// Stops the task (a step at a time: `Requeue` while it takes its grace, which keeps the
    /// finalizer), leaves the network, removes what the instance had on the node and gives its
    /// uid back.
    async fn remove(
        &self,
        obj: &Object<InstanceSpec>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        let env = &self.env;
        let name = obj.name();
        crate::report::removing(&ctx.api, name).await;
        if let Some(left) = self.tear_down(obj).await? {
            return Ok(Action::Requeue(left));
        }
        if obj.spec.network.is_some() && env.networks.is_some() {
            crate::report::left_network(&ctx.api, name).await;
        }
        if let Some(uid) = obj.status.uid {
            env.uids.release(uid);
        }
        ctx.events
            .normal(obj, r::REMOVED, "stopped; its task and files are removed");
        tracing::info!("instance removed");
        Ok(Action::AwaitChange)
    }
}

/// The time between SIGTERM and SIGKILL when the instance is stopped.
fn grace_of(obj: &Object<InstanceSpec>, env: &InstanceEnv) -> std::time::Duration {
    obj.spec
        .restart_policy
        .as_ref()
        .and_then(|p| p.stop_grace)
        .map(|g| g.0)
        .unwrap_or(env.defaults.stop_grace)
}

/// Removes an instance's files. Unmounts and directory removals block: off the runtime's
/// threads, so that many instances are removed at once.
async fn remove_files(env: &InstanceEnv, name: &str) -> Result<(), InstanceError> {
    let (host, owned) = (env.host.clone(), name.to_string());
    tokio::task::spawn_blocking(move || host.remove(&owned))
        .await
        .map_err(|e| InstanceError::Io {
            what: format!("removing the files of {name}: {e}"),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// The Events of one reconcile: starts, exits, probe failures and refused starts (the
/// runtime adds a Warning for a reconcile that failed).
fn record(events: &Recorder, obj: &Object<InstanceSpec>, step: &Step, outcome: &Outcome) {
    match (step, outcome) {
        (Step::Start { replace, .. }, Outcome::Started { .. }) => {
            let (reason, what) = if *replace {
                (r::REPLACED, "out-of-date task replaced by a new one")
            } else {
                (r::STARTED, "task started")
            };
            events.normal(obj, reason, what);
        }
        (_, Outcome::StartFailed { reason, message }) => events.warning(obj, reason, message),
        (
            Step::RecordExit {
                reason, message, ..
            },
            _,
        ) => {
            if *reason == r::COMPLETED {
                events.normal(obj, reason, message)
            } else {
                events.warning(obj, reason, message)
            }
        }
        (Step::ProbeFailed { reason, message }, _) => events.warning(obj, reason, message),
        (Step::Offline { running: true }, Outcome::Stopped) => events.warning(
            obj,
            r::OFFLINE_TTL_EXPIRED,
            "the cloud has been away longer than the item's offlineTTL: stopped",
        ),
        _ => {}
    }
}
