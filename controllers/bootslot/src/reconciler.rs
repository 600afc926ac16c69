//! The reconcile of the BootSlot in four rooms: [`crate::observe`] reads, [`crate::plan`]
//! decides the one next step, [`crate::act`] carries it out (record first, then the side
//! effect) and [`crate::report`] writes the status once; and the controller, woken by the
//! Items the slot names (an Item is Ready only once its Layers are).

use std::sync::Arc;

use aos_api::{BootSlotSpec, ItemSpec, Object, Severity};
use aos_reconcile::{Action, Context, Controller, ControllerConfig, Reconciler};
use aos_slots::step::reboot_if_due;
use aos_store::Backend;
use tokio_util::sync::CancellationToken;

use crate::act::act;
use crate::observe::observe;
use crate::plan::{plan, Step};
use crate::report::report;
use crate::{BootEnv, BootError};

/// The reconciler of BootSlots.
pub struct BootSlotReconciler {
    env: Arc<BootEnv>,
}

impl BootSlotReconciler {
    /// A reconciler working with `env`.
    pub fn new(env: Arc<BootEnv>) -> Self {
        BootSlotReconciler { env }
    }
}

impl Reconciler for BootSlotReconciler {
    type Kind = BootSlotSpec;
    type Error = BootError;

    fn owns(&self, obj: &Object<BootSlotSpec>) -> bool {
        aos_slots::component::is_own_slot(self.env.settings.object.as_deref(), obj.name())
    }

    async fn apply(
        &self,
        obj: Arc<Object<BootSlotSpec>>,
        ctx: &Context<BootSlotSpec>,
    ) -> Result<Action, BootError> {
        let env = &self.env;
        let Some(o) = observe(env, &ctx.backend, &obj).await? else {
            return Ok(Action::AwaitChange);
        };
        let step = plan(&o, &env.settings.limits);
        tracing::debug!(?step, "planned");
        let outcome = act(env, &o, &step).await;
        // A kill in a test stops here, as a killed agent would: no status, no retry.
        if let Err(BootError::Crashed(at)) = &outcome {
            tracing::warn!(at, "killed");
            env.crash.killed(at);
            return Ok(Action::AwaitChange);
        }
        let outcome = outcome?;
        let action = report(env, &ctx.api, &o, &step, &outcome).await?;
        if let Some((severity, reason, message)) = event_of(&step, o.obj.status.pending.as_deref())
        {
            ctx.events.event(&o.obj, severity, reason, message);
        }
        if !reboot_if_due(&outcome, &env.crash, env.machine.as_ref()).await? {
            return Ok(Action::AwaitChange);
        }
        match step {
            Step::Broken(why) => Err(BootError::Config(why)),
            _ => Ok(action),
        }
    }
}

/// The controller: a BootSlot is woken by the Items it names.
pub fn controller(
    env: Arc<BootEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<BootSlotReconciler> {
    let controller = Controller::new(BootSlotReconciler::new(env), backend, config);
    let by_item = controller.reader();
    controller.watches::<ItemSpec>(move |item: &Object<ItemSpec>| {
        aos_slots::component::slots_naming(
            &by_item.list(),
            &item.spec.item_id,
            BootSlotSpec::components,
        )
    })
}

/// Runs the BootSlot controller until `stop`.
pub async fn run(
    env: Arc<BootEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    stop: CancellationToken,
) {
    controller(env, backend, config).run(stop).await;
}

/// The Event a step makes (the steps an operator follows an A/B update by); `pending` names
/// the update in progress.
fn event_of(step: &Step, pending: Option<&str>) -> Option<(Severity, &'static str, String)> {
    let update = pending.map_or_else(|| "the update".to_string(), |p| format!("update {p}"));
    let (severity, reason, message) = match step {
        Step::Refuse {
            version, message, ..
        } => (
            Severity::Warning,
            "Refused",
            format!("version {version} is not a boot image: {message}"),
        ),
        Step::Write {
            target, version, ..
        } => (
            Severity::Normal,
            "Writing",
            format!("writing version {version} to slot {target}"),
        ),
        Step::Arm => (
            Severity::Normal,
            "TrialBoot",
            format!("{update} written; rebooting into it once (BootNext)"),
        ),
        Step::BeginProbation => (
            Severity::Normal,
            "Probation",
            format!("booted {update}; health checks begin"),
        ),
        Step::Commit => (
            Severity::Normal,
            "Committed",
            format!("{update} passed its health checks and is now main"),
        ),
        Step::Retry => (
            Severity::Warning,
            "Retrying",
            format!("the firmware did not boot {update}; trying again"),
        ),
        Step::RollBack { reason, message } => (
            Severity::Warning,
            "RollingBack",
            format!("{update}: {reason}: {message}"),
        ),
        Step::Fail { reason, message } => (
            Severity::Warning,
            "UpdateFailed",
            format!("{update}: {reason}: {message}"),
        ),
        _ => return None,
    };
    Some((severity, reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_steps_of_an_update_are_events_and_the_quiet_ones_are_not() {
        let (sev, reason, message) = event_of(&Step::Commit, Some("2.0 on b")).unwrap();
        assert_eq!((sev, reason), (Severity::Normal, "Committed"));
        assert_eq!(
            message,
            "update 2.0 on b passed its health checks and is now main"
        );
        let back = Step::RollBack {
            reason: "Unhealthy".into(),
            message: "unit x failed".into(),
        };
        let (sev, reason, message) = event_of(&back, None).unwrap();
        assert_eq!((sev, reason), (Severity::Warning, "RollingBack"));
        assert_eq!(message, "the update: Unhealthy: unit x failed");
        assert_eq!(event_of(&Step::Idle, None), None);
        assert_eq!(event_of(&Step::Check, None), None);
    }
}
