//! What the two OS controllers do alike around the one step a reconcile takes: what came of
//! the step, when to look again, the status written once with its Ready condition, and the
//! reboot the step asked for, taken only after the status is written (so that the status says
//! why before the machine goes down).

use std::time::Duration;

use aos_api::condition::READY;
use aos_api::{ConditionStatus, Spec, Status};
use aos_reconcile::Action;
use aos_store::{Api, StoreError};
use chrono::{DateTime, Utc};

use crate::crash::Crashpoints;
use crate::machine::Machine;
use crate::SlotsError;

/// What came of a step.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing happened.
    Nothing,
    /// Records, files or EFI variables changed: look again at once.
    Progress,
    /// A reboot is due, for this reason.
    Reboot(String),
}

/// The Ready condition a report writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ready {
    /// Whether it is `True`.
    pub ok: bool,
    /// CamelCase.
    pub reason: String,
    /// For people.
    pub message: String,
}

/// Writes `desired` as the status of `name` (its common part, conditions included, kept) with
/// the Ready condition `ready`.
pub async fn write_status<S: Spec>(
    api: &Api<S>,
    name: &str,
    desired: S::Status,
    ready: &Ready,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let status = if ready.ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    api.update_status(name, |s| {
        let common = std::mem::take(s.common_mut());
        *s = desired.clone();
        *s.common_mut() = common;
        s.common_mut()
            .set_condition(READY, status, &ready.reason, &ready.message, now);
    })
    .await?;
    Ok(())
}

/// When to look again after `outcome`: at once after progress, after `reboot_wait` if the
/// machine is still up after a reboot, after `wait` when a health round is due then.
pub fn next(outcome: &Outcome, wait: Option<Duration>, reboot_wait: Duration) -> Action {
    match (outcome, wait) {
        (Outcome::Reboot(_), _) => Action::Requeue(reboot_wait),
        (Outcome::Progress, _) => Action::Requeue(Duration::from_millis(1)),
        (_, Some(d)) => Action::Requeue(d),
        _ => Action::AwaitChange,
    }
}

/// Takes the reboot `outcome` asks for (after the status is written). `Ok(false)` when a test
/// killed the agent at the crash point `reboot` instead.
pub async fn reboot_if_due(
    outcome: &Outcome,
    crash: &Crashpoints,
    machine: &dyn Machine,
) -> Result<bool, SlotsError> {
    let Outcome::Reboot(why) = outcome else {
        return Ok(true);
    };
    if let Err(k) = crash.hit("reboot") {
        crash.killed(&k.0);
        return Ok(false);
    }
    machine.reboot(why).await?;
    Ok(true)
}
