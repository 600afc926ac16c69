//! The only place a RootfsSlot's status is written: once per reconcile, from the records and
//! action files as they are after the step; and the action that says when to look again.

use aos_api::{RootfsAction, RootfsSlotSpec, RootfsSlotStatus, UpdatePhase};
use aos_reconcile::Action;
use aos_slots::component::Blob;
use aos_slots::step::{next, write_status, Outcome, Ready};
use aos_store::Api;

use crate::flags::{Flags, WorkDir};
use crate::observe::Observed;
use crate::plan::Step;
use crate::records::{Pending, Phase, State};
use crate::{RootfsEnv, RootfsError};

fn action(f: &Flags) -> RootfsAction {
    if f.failed.is_some() {
        RootfsAction::Failed
    } else if f.do_apply {
        RootfsAction::DoApply
    } else if f.updated {
        RootfsAction::Updated
    } else if f.do_update {
        RootfsAction::DoUpdate
    } else {
        RootfsAction::None
    }
}

/// The phase and the Ready condition's (ok, reason, message).
fn readiness(
    o: &Observed,
    state: Option<&State>,
    pending: Option<&Pending>,
) -> (UpdatePhase, bool, String, String) {
    let wanted = o.wanted.as_ref();
    if let Some(p) = pending {
        let phase = match p.phase {
            Phase::Staging => UpdatePhase::Writing,
            Phase::Staged | Phase::Applying => UpdatePhase::Rebooting,
            Phase::Trial => UpdatePhase::Probation,
            Phase::Reverting => UpdatePhase::RollingBack,
        };
        if let Some(w) = wanted.filter(|w| w.version != p.version) {
            let msg = format!(
                "version {} waits for the pending update to {} ({:?})",
                w.version, p.version, p.phase
            );
            return (phase, false, "UpdatePending".into(), msg);
        }
        let msg = format!("{:?}: version {}", p.phase, p.version);
        return (phase, false, "Updating".into(), msg);
    }
    if let Some(w) = wanted {
        if let Some(f) = state
            .and_then(|s| s.failed.as_ref())
            .filter(|f| f.version == w.version)
        {
            let msg = format!("version {}: {}", f.version, f.message);
            return (UpdatePhase::Failed, false, f.reason.clone(), msg);
        }
        if state.and_then(|s| s.installed.as_deref()) != Some(w.version.as_str()) {
            if let Blob::Waiting(why) = &w.blob {
                return (
                    UpdatePhase::Waiting,
                    false,
                    "WaitingForItem".into(),
                    why.clone(),
                );
            }
            let msg = format!("version {} is to be installed", w.version);
            return (UpdatePhase::Writing, false, "Updating".into(), msg);
        }
    }
    let v = state
        .and_then(|s| s.installed.clone())
        .unwrap_or_else(|| "unknown".into());
    (
        UpdatePhase::Idle,
        true,
        "Installed".into(),
        format!("the root holds version {v}"),
    )
}

/// Writes the status and says when to look again.
pub async fn report(
    env: &RootfsEnv,
    api: &Api<RootfsSlotSpec>,
    o: &Observed,
    step: &Step,
    outcome: &Outcome,
) -> Result<Action, RootfsError> {
    let state = env.records.state()?;
    let pending = env.records.pending()?;
    let flags = WorkDir(env.settings.work_dir.clone()).flags();
    let (phase, ok, reason, message) = readiness(o, state.as_ref(), pending.as_ref());
    let desired = RootfsSlotStatus {
        installed_version: state.as_ref().and_then(|s| s.installed.clone()),
        pending_version: pending.as_ref().map(|p| p.version.clone()),
        action: action(&flags),
        phase,
        health: pending
            .as_ref()
            .and_then(|p| p.health.as_ref())
            .map(|h| h.message.clone()),
        update: match (&pending, &state) {
            (Some(p), _) => Some(p.info(env.settings.limits.max_attempts)),
            (None, Some(s)) => s.last_update.clone(),
            _ => None,
        },
        ..RootfsSlotStatus::default()
    };
    let ready = Ready {
        ok,
        reason,
        message,
    };
    write_status(api, o.obj.name(), desired, &ready, o.now).await?;
    let wait = match step {
        Step::WaitRound(d) => Some(*d),
        _ => None,
    };
    Ok(next(outcome, wait, env.settings.reboot_wait))
}
