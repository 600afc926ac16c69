//! Carries out the one step the plan chose. Every step writes its record before the side
//! effect it announces (write-ahead), so that a kill at any point leaves a record from which
//! the next reconcile takes the right step; the test seam [`crate::Crashpoints`] is asked
//! before each record and each side effect.

use std::sync::Arc;

use aos_slots::device::SlotDevice;
use aos_slots::efi::{BootVars, LoadOption};
use aos_slots::health::check;
use aos_slots::step::Outcome;
use aos_slots::SlotsError;

use crate::observe::Observed;
use crate::plan::{boot_order, slot_entries, Step};
use crate::records::{Failure, Held, Pending, Phase, State, RECOVERY};
use crate::{BootEnv, BootError};

fn entry_of(o: &Observed, slot: &str) -> Result<u16, BootError> {
    slot_entries(o)
        .get(slot)
        .copied()
        .ok_or_else(|| BootError::Config(format!("slot {slot} has no boot entry")))
}

fn state_of(o: &Observed) -> Result<State, BootError> {
    o.state
        .clone()
        .ok_or_else(|| BootError::Config("no slot state recorded".into()))
}

fn pending_of(o: &Observed) -> Result<Pending, BootError> {
    o.pending
        .clone()
        .ok_or_else(|| BootError::Config("no pending update recorded".into()))
}

/// Marks `slot` broken in the state record (written before the slot is touched).
fn mark_broken(env: &BootEnv, state: &mut State, slot: &str) -> Result<(), BootError> {
    state.slots.insert(
        slot.into(),
        Held {
            broken: true,
            ..Held::default()
        },
    );
    env.records.save_state(state)?;
    Ok(())
}

/// Records that `p` failed and forgets it: BootNext is cleared first, the target stays out of
/// BootOrder.
fn fail(
    env: &BootEnv,
    o: &Observed,
    mut p: Pending,
    reason: &str,
    msg: &str,
) -> Result<(), BootError> {
    env.crash.hit("fail")?;
    BootVars(env.efi.as_ref()).clear_next()?;
    let mut state = state_of(o)?;
    p.step("failed", o.now, msg);
    state.slots.entry(p.target.clone()).or_default().broken = true;
    state.slots.entry(p.target.clone()).or_default().version = None;
    state.failed = Some(Failure {
        target: p.target.clone(),
        version: p.version.clone(),
        reason: reason.into(),
        message: msg.into(),
        at: o.now,
    });
    state.last_update = Some(p.info(env.settings.limits.max_attempts));
    env.records.save_state(&state)?;
    env.crash.hit("fail:recorded")?;
    env.records.clear_pending()?;
    tracing::warn!(target = %p.target, version = %p.version, reason, message = msg, "update failed");
    Ok(())
}

async fn write(
    env: &BootEnv,
    o: &Observed,
    target: &str,
    version: &str,
    blob: &std::path::Path,
    digest: &str,
) -> Result<(), BootError> {
    // First the announcement (its own reconcile, so that status says Writing during a long
    // write): the record, the slot marked broken and out of BootOrder.
    let Some(mut p) = o.pending.clone() else {
        env.crash.hit("write")?;
        let previous = o
            .state
            .as_ref()
            .and_then(|s| s.slots.get(target).cloned())
            .unwrap_or_default();
        let mut p = Pending {
            previous,
            target: target.into(),
            version: version.into(),
            phase: Phase::Writing,
            attempts: 0,
            boot_id: o.boot_id.clone(),
            since: None,
            health: None,
            reason: None,
            written: None,
            steps: Vec::new(),
        };
        p.step("write", o.now, &format!("{target} ← {version}"));
        env.records.save_pending(&p)?;
        let mut state = state_of(o)?;
        mark_broken(env, &mut state, target)?;
        // Out of BootOrder before its first byte changes.
        if let Some(n) = slot_entries(o).get(target) {
            let order: Vec<u16> = o.efi.order.iter().copied().filter(|x| x != n).collect();
            if order != o.efi.order {
                BootVars(env.efi.as_ref()).set_order(&order)?;
            }
        }
        env.crash.hit("write:recorded")?;
        return Ok(());
    };
    let setting = env
        .settings
        .slot(target)
        .ok_or_else(|| BootError::Config(format!("no slot {target}")))?;
    let device = SlotDevice::new(&setting.device);
    let (blob_path, want) = (blob.to_path_buf(), digest.to_string());
    tracing::info!(target, version, device = %setting.device.display(), "writing the update");
    let written = tokio::task::spawn_blocking(move || device.write_gzip(&blob_path, &want))
        .await
        .map_err(|e| BootError::Config(format!("the write stopped: {e}")))?;
    let w = match written {
        Ok(w) => w,
        // Bad input: nothing was written (the image is checked whole first); it will not get
        // better by trying again.
        Err(
            e @ (SlotsError::Mismatch { .. }
            | SlotsError::TooLarge { .. }
            | SlotsError::BadImage(_)),
        ) => {
            // The slot holds what it held: its record and its place in BootOrder come back.
            let mut state = state_of(o)?;
            state.slots.insert(target.into(), p.previous.clone());
            state.failed = Some(Failure {
                target: target.into(),
                version: version.into(),
                reason: e.reason().into(),
                message: e.to_string(),
                at: o.now,
            });
            p.step("refused", o.now, &e.to_string());
            state.last_update = Some(p.info(env.settings.limits.max_attempts));
            env.records.save_state(&state)?;
            env.records.clear_pending()?;
            tracing::warn!(target, version, error = %e, "refused the image");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    env.crash.hit("verify")?;
    let ms = |d: std::time::Duration| d.as_millis() as u64;
    if let Some(last) = p.steps.last_mut() {
        last.duration_ms = Some(ms(w.check + w.write));
        last.message = format!("{target} ← {version}: {} bytes", w.bytes);
    }
    p.steps.push(aos_api::UpdateStep {
        step: "verify".into(),
        at: o.now,
        duration_ms: Some(ms(w.verify)),
        message: w.digest.clone(),
    });
    p.written = Some(w.digest);
    env.records.save_pending(&p)?;
    Ok(())
}

/// Names the target in BootNext (after the record says so) and reboots.
fn arm(env: &BootEnv, o: &Observed, mut p: Pending, step: &str) -> Result<Outcome, BootError> {
    env.crash.hit(step)?;
    p.phase = Phase::Armed;
    p.attempts += 1;
    p.boot_id = o.boot_id.clone();
    p.health = None;
    p.since = None;
    p.step("reboot", o.now, &format!("attempt {}", p.attempts));
    env.records.save_pending(&p)?;
    env.crash.hit(&format!("{step}:recorded"))?;
    BootVars(env.efi.as_ref()).set_next(entry_of(o, &p.target)?)?;
    Ok(Outcome::Reboot(format!(
        "trying {} in slot {}",
        p.version, p.target
    )))
}

/// Makes the target main; whether the machine must reboot to run it.
fn commit(env: &BootEnv, o: &Observed, mut p: Pending) -> Result<bool, BootError> {
    env.crash.hit("commit")?;
    if p.phase != Phase::Committing {
        p.phase = Phase::Committing;
        p.step("commit", o.now, "");
        env.records.save_pending(&p)?;
    }
    env.crash.hit("commit:recorded")?;
    let mut state = state_of(o)?;
    let entries = slot_entries(o);
    if p.target != RECOVERY {
        state.main = p.target.clone();
    }
    state.slots.insert(
        p.target.clone(),
        Held {
            version: Some(p.version.clone()),
            digest: p.written.clone(),
            broken: false,
        },
    );
    // The new main first, the old one (now the fallback) next, then recovery.
    let order = boot_order(&state, &entries, &o.efi.order);
    BootVars(env.efi.as_ref()).set_order(&order)?;
    env.crash.hit("commit:order")?;
    state.failed = None;
    p.step("committed", o.now, "");
    state.last_update = Some(p.info(env.settings.limits.max_attempts));
    env.records.save_state(&state)?;
    env.records.clear_pending()?;
    tracing::info!(target = %p.target, version = %p.version, "update committed");
    // A power cut in the commit boots the old main: boot what was committed.
    let booted = crate::plan::current_slot(o);
    Ok(p.target != RECOVERY && booted.as_deref() != Some(p.target.as_str()))
}

/// Carries out `step`.
pub async fn act(env: &Arc<BootEnv>, o: &Observed, step: &Step) -> Result<Outcome, BootError> {
    let efi = BootVars(env.efi.as_ref());
    match step {
        Step::Broken(why) => Err(BootError::Config(why.clone())),
        Step::Idle | Step::Wait(_) | Step::Hold | Step::WaitRound(_) => Ok(Outcome::Nothing),
        Step::Adopt(state) => {
            env.crash.hit("adopt")?;
            env.records.save_state(state)?;
            tracing::info!(main = %state.main, "adopted the boot slots");
            Ok(Outcome::Progress)
        }
        Step::Entries { create, order } => {
            env.crash.hit("entries")?;
            for (slot, n) in create {
                let disk = o
                    .disks
                    .get(slot)
                    .and_then(|d| d.clone().ok())
                    .ok_or_else(|| {
                        BootError::Config(format!("slot {slot} has no known partition"))
                    })?;
                let opt = LoadOption::new(&format!("aosd {slot}"), disk, &env.settings.loader);
                efi.set_entry(*n, &opt)?;
                tracing::info!(slot, entry = n, "created the boot entry");
            }
            env.crash.hit("entries:created")?;
            efi.set_order(order)?;
            Ok(Outcome::Progress)
        }
        Step::Refuse {
            target,
            version,
            message,
        } => {
            let mut state = state_of(o)?;
            state.failed = Some(Failure {
                target: target.clone(),
                version: version.clone(),
                reason: "InvalidImage".into(),
                message: message.clone(),
                at: o.now,
            });
            env.records.save_state(&state)?;
            Ok(Outcome::Progress)
        }
        Step::Abandon => {
            env.crash.hit("abandon")?;
            env.records.clear_pending()?;
            Ok(Outcome::Progress)
        }
        Step::Write {
            target,
            version,
            blob,
            digest,
        } => {
            write(env, o, target, version, blob, digest).await?;
            Ok(Outcome::Progress)
        }
        Step::Arm => arm(env, o, pending_of(o)?, "arm"),
        Step::Retry => arm(env, o, pending_of(o)?, "retry"),
        Step::Reboot => {
            let p = pending_of(o)?;
            if p.phase == Phase::RollingBack {
                efi.clear_next()?;
            } else {
                efi.set_next(entry_of(o, &p.target)?)?;
            }
            Ok(Outcome::Reboot("resuming the update's reboot".into()))
        }
        Step::BeginProbation => {
            env.crash.hit("probation")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::Probation;
            p.since = Some(o.now);
            p.boot_id = o.boot_id.clone();
            p.health = None;
            p.step("health", o.now, &format!("booted slot {}", p.target));
            env.records.save_pending(&p)?;
            Ok(Outcome::Progress)
        }
        Step::Check => {
            let mut p = pending_of(o)?;
            p.health = Some(check(env.health.as_ref(), env.machine.as_ref()).await);
            env.crash.hit("check")?;
            env.records.save_pending(&p)?;
            Ok(Outcome::Progress)
        }
        Step::Commit => {
            if commit(env, o, pending_of(o)?)? {
                return Ok(Outcome::Reboot("booting the committed update".into()));
            }
            Ok(Outcome::Progress)
        }
        Step::Fail { reason, message } => {
            fail(env, o, pending_of(o)?, reason, message)?;
            Ok(Outcome::Progress)
        }
        Step::RollBack { reason, message } => {
            env.crash.hit("rollback")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::RollingBack;
            p.reason = Some((reason.clone(), message.clone()));
            p.boot_id = o.boot_id.clone();
            p.step("rollback", o.now, message);
            env.records.save_pending(&p)?;
            env.crash.hit("rollback:recorded")?;
            efi.clear_next()?;
            Ok(Outcome::Reboot(format!("rolling back: {message}")))
        }
    }
}
