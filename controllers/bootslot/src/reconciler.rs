//! The reconcile of the BootSlot in four rooms: [`crate::observe`] reads, [`crate::plan`]
//! decides the one next step, [`crate::act`] carries it out (record first, then the side
//! effect) and [`crate::report`] writes the status once; and the controller, woken by the
//! Items the slot names (an Item is Ready only once its Layers are).

use std::sync::Arc;

use aos_api::{BootSlotSpec, ItemSpec, Object};
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
