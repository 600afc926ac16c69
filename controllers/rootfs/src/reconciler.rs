//! The reconcile of the RootfsSlot in four rooms: [`crate::observe`] reads, [`crate::plan`]
//! decides the one next step, [`crate::act`] carries it out (record first, then the side
//! effect) and [`crate::report`] writes the status once; and the controller, woken by the
//! Items the slot names (an Item is Ready only once its Layers are).

use std::sync::Arc;

use aos_api::{ItemSpec, Object, RootfsSlotSpec, Severity};
use aos_reconcile::{Action, Context, Controller, ControllerConfig, Reconciler};
use aos_slots::step::reboot_if_due;
use aos_store::Backend;
use tokio_util::sync::CancellationToken;

use crate::act::act;
use crate::observe::observe;
use crate::plan::{plan, Step};
use crate::report::report;
use crate::{RootfsEnv, RootfsError};

/// The reconciler of RootfsSlots.
pub struct RootfsSlotReconciler {
    env: Arc<RootfsEnv>,
}

impl RootfsSlotReconciler {
    /// A reconciler working with `env`.
    pub fn new(env: Arc<RootfsEnv>) -> Self {
        RootfsSlotReconciler { env }
    }
}

impl Reconciler for RootfsSlotReconciler {
    type Kind = RootfsSlotSpec;
    type Error = RootfsError;

    fn owns(&self, obj: &Object<RootfsSlotSpec>) -> bool {
        aos_slots::component::is_own_slot(self.env.settings.object.as_deref(), obj.name())
    }

    async fn apply(
        &self,
        obj: Arc<Object<RootfsSlotSpec>>,
        ctx: &Context<RootfsSlotSpec>,
    ) -> Result<Action, RootfsError> {
        let env = &self.env;
        let Some(o) = observe(env, &ctx.backend, &obj).await? else {
            return Ok(Action::AwaitChange);
        };
        let step = plan(&o, &env.settings.limits);
        tracing::debug!(?step, "planned");
        let outcome = act(env, &o, &step).await;
        // A kill in a test stops here, as a killed agent would: no status, no retry.
        if let Err(RootfsError::Crashed(at)) = &outcome {
            tracing::warn!(at, "killed");
            env.crash.killed(at);
            return Ok(Action::AwaitChange);
        }
        let outcome = outcome?;
        let action = report(env, &ctx.api, &o, &step, &outcome).await?;
        let pending = o.obj.status.pending_version.as_deref();
        if let Some((severity, reason, message)) = event_of(&step, pending) {
            ctx.events.event(&o.obj, severity, reason, message);
        }
        if !reboot_if_due(&outcome, &env.crash, env.machine.as_ref()).await? {
            return Ok(Action::AwaitChange);
        }
        Ok(action)
    }
}

/// The controller: a RootfsSlot is woken by the Items it names.
pub fn controller(
    env: Arc<RootfsEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<RootfsSlotReconciler> {
    let controller = Controller::new(RootfsSlotReconciler::new(env), backend, config);
    let by_item = controller.reader();
    controller.watches::<ItemSpec>(move |item: &Object<ItemSpec>| {
        aos_slots::component::slots_naming(
            &by_item.list(),
            &item.spec.item_id,
            RootfsSlotSpec::components,
        )
    })
}

/// Runs the RootfsSlot controller until `stop`.
pub async fn run(
    env: Arc<RootfsEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    stop: CancellationToken,
) {
    controller(env, backend, config).run(stop).await;
}

/// The Event a step makes (the steps an operator follows a rootfs update by); `pending` is
/// the version in progress.
fn event_of(step: &Step, pending: Option<&str>) -> Option<(Severity, &'static str, String)> {
    let update = pending.map_or_else(|| "the update".to_string(), |p| format!("version {p}"));
    let (severity, reason, message) = match step {
        Step::Refuse { version, message } => (
            Severity::Warning,
            "Refused",
            format!("version {version} is not a rootfs image: {message}"),
        ),
        Step::Stage { version, kind, .. } => (
            Severity::Normal,
            "Staged",
            format!("{kind} image of version {version} staged; rebooting into a trial"),
        ),
        Step::BeginTrial => (
            Severity::Normal,
            "Trial",
            format!("the trial root of {update} runs; health checks begin"),
        ),
        Step::Confirm => (
            Severity::Normal,
            "Confirmed",
            format!("{update} passed its health checks; rebooting to apply it"),
        ),
        Step::Reject { reason, message } => (
            Severity::Warning,
            "Reverting",
            format!("{update}: {reason}: {message}"),
        ),
        Step::Retry => (
            Severity::Warning,
            "Retrying",
            format!("the trial of {update} was cut short; staging it again"),
        ),
        Step::Promote => (
            Severity::Normal,
            "Applied",
            format!("{update} is applied and running"),
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
        let (sev, reason, message) = event_of(&Step::Promote, Some("3.1")).unwrap();
        assert_eq!((sev, reason), (Severity::Normal, "Applied"));
        assert_eq!(message, "version 3.1 is applied and running");
        let (sev, reason, _) = event_of(&Step::Retry, Some("3.1")).unwrap();
        assert_eq!((sev, reason), (Severity::Warning, "Retrying"));
        assert_eq!(event_of(&Step::Idle, None), None);
    }
}
