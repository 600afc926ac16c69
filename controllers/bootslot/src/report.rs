//! The only place a BootSlot's status is written: once per reconcile, from the records as they
//! are after the step (they are the truth a power cut leaves), the EFI variables and the step;
//! and the action that says when to look again.

use aos_api::{BootSlotSpec, BootSlotStatus, SlotInfo, UpdatePhase};
use aos_reconcile::Action;
use aos_slots::efi::boot_entry_name;
use aos_slots::step::{next, write_status, Outcome, Ready};
use aos_store::Api;

use crate::observe::{Blob, Observed};
use crate::plan::{current_slot, slot_entries, Step};
use crate::records::{Pending, Phase, State, RECOVERY};
use crate::{BootEnv, BootError};

/// Why the BootSlot is not Ready.
const UPDATING: &str = "Updating";
const INSTALLED: &str = "Installed";
const WAITING: &str = "WaitingForItem";
const SLOT_UNKNOWN: &str = "SlotUnknown";
const SETTING_UP: &str = "SettingUp";
const RECOVERY_BOOTED: &str = "RecoveryBooted";
const FALLBACK_BOOTED: &str = "FallbackBooted";

fn phase_of(p: Option<&Pending>) -> Option<UpdatePhase> {
    Some(match p?.phase {
        Phase::Writing => UpdatePhase::Writing,
        Phase::Armed => UpdatePhase::Rebooting,
        Phase::Probation => UpdatePhase::Probation,
        Phase::Committing => UpdatePhase::Committing,
        Phase::RollingBack => UpdatePhase::RollingBack,
    })
}

/// The phase and the Ready condition's (ok, reason, message).
fn readiness(
    o: &Observed,
    state: Option<&State>,
    pending: Option<&Pending>,
    step: &Step,
) -> (UpdatePhase, bool, String, String) {
    match step {
        Step::Broken(why) => return (UpdatePhase::Idle, false, SLOT_UNKNOWN.into(), why.clone()),
        // Not Ready until the boot entries and their order are in place.
        Step::Adopt(_) | Step::Entries { .. } => {
            let msg = "recording the slots and writing their boot entries".to_string();
            return (UpdatePhase::Idle, false, SETTING_UP.into(), msg);
        }
        _ => {}
    }
    if let (Some(phase), Some(p)) = (phase_of(pending), pending) {
        let msg = format!("{:?}: version {} to slot {}", phase, p.version, p.target);
        return (phase, false, UPDATING.into(), msg);
    }
    let wanted = [(&o.wanted, false), (&o.wanted_recovery, true)];
    for (w, recovery) in wanted {
        let Some(w) = w else { continue };
        if let Some(f) = state
            .and_then(|s| s.failed.as_ref())
            .filter(|f| f.version == w.version && (f.target == RECOVERY) == recovery)
        {
            let msg = format!("version {} for slot {}: {}", f.version, f.target, f.message);
            return (UpdatePhase::Failed, false, f.reason.clone(), msg);
        }
        let installed = state.is_some_and(|s| {
            let slot = if recovery { RECOVERY } else { s.main.as_str() };
            s.version(slot) == Some(w.version.as_str())
        });
        if !installed {
            if let Blob::Waiting(why) = &w.blob {
                return (UpdatePhase::Waiting, false, WAITING.into(), why.clone());
            }
            let msg = format!("version {} is to be installed", w.version);
            return (UpdatePhase::Writing, false, UPDATING.into(), msg);
        }
    }
    let main = state.map(|s| s.main.clone()).unwrap_or_default();
    let version = |slot: &str| state.and_then(|s| s.version(slot)).unwrap_or("unknown");
    // Outside an update, running anything but main means main did not boot: say so.
    match current_slot(o).as_deref() {
        Some(RECOVERY) => {
            let msg = format!(
                "the device runs its recovery system (version {}): slot {main} and its fallback did not boot",
                version(RECOVERY)
            );
            (UpdatePhase::Idle, false, RECOVERY_BOOTED.into(), msg)
        }
        Some(c) if c != main => {
            let msg = format!(
                "slot {main} did not boot: the fallback slot {c} runs version {}",
                version(c)
            );
            (UpdatePhase::Idle, false, FALLBACK_BOOTED.into(), msg)
        }
        _ => {
            let msg = format!("slot {main} runs version {}", version(&main));
            (UpdatePhase::Idle, true, INSTALLED.into(), msg)
        }
    }
}

fn slots(env: &BootEnv, o: &Observed, state: Option<&State>) -> Vec<SlotInfo> {
    let entries = slot_entries(o);
    env.settings
        .slots()
        .into_iter()
        .map(|s| {
            let role = match (s.name.as_str(), state) {
                (RECOVERY, _) => "recovery",
                (n, Some(st)) if n == st.main => "main",
                (_, Some(st)) if st.broken(&s.name) => "broken",
                (_, Some(_)) => "fallback",
                (_, None) => "",
            };
            SlotInfo {
                name: s.name.clone(),
                device: s.device.display().to_string(),
                version: state.and_then(|st| st.version(&s.name)).map(String::from),
                boot_entry: entries.get(&s.name).map(|n| boot_entry_name(*n)),
                role: role.into(),
            }
        })
        .collect()
}

/// Writes the status and says when to look again.
pub async fn report(
    env: &BootEnv,
    api: &Api<BootSlotSpec>,
    o: &Observed,
    step: &Step,
    outcome: &Outcome,
) -> Result<Action, BootError> {
    let state = env.records.state()?;
    let pending = env.records.pending()?;
    let (phase, ok, reason, message) = readiness(o, state.as_ref(), pending.as_ref(), step);
    let update = match (&pending, &state) {
        (Some(p), _) => Some(p.info(env.settings.limits.max_attempts)),
        (None, Some(s)) => s.last_update.clone(),
        _ => None,
    };
    let desired = BootSlotStatus {
        slots: slots(env, o, state.as_ref()),
        current: current_slot(o),
        main: state.as_ref().map(|s| s.main.clone()),
        pending: pending.as_ref().map(|p| p.version.clone()),
        health: pending
            .as_ref()
            .and_then(|p| p.health.as_ref())
            .map(|h| h.message.clone()),
        phase,
        update,
        ..BootSlotStatus::default()
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
