//! Carries out the one step the plan chose: the record first, then the action file, then the
//! reboot, so that a kill at any point leaves a record from which the next reconcile takes the
//! right step; the test seam [`crate::Crashpoints`] is asked before each.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use aos_slots::health::check;
use aos_slots::step::Outcome;
use aos_slots::SlotsError;
use sha2::{Digest, Sha256};

use crate::flags::{WorkDir, DO_APPLY, DO_UPDATE, FAILED, IMAGE, PRESERVE, UPDATED};
use crate::observe::Observed;
use crate::plan::Step;
use crate::records::{Failure, Pending, Phase, State};
use crate::{RootfsEnv, RootfsError};

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

/// Copies `blob` to `to` durably while hashing it; the copy must have `digest`.
fn copy_verified(blob: &Path, to: &Path, digest: &str) -> Result<(), SlotsError> {
    let tmp = to.with_extension("tmp");
    let mut src =
        std::fs::File::open(blob).map_err(io(format!("failed to open {}", blob.display())))?;
    let mut dst =
        std::fs::File::create(&tmp).map_err(io(format!("failed to create {}", tmp.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src
            .read(&mut buf)
            .map_err(io(format!("failed to read {}", blob.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])
            .map_err(io(format!("failed to write {}", tmp.display())))?;
    }
    dst.sync_all()
        .map_err(io(format!("failed to sync {}", tmp.display())))?;
    let actual = format!("sha256:{}", hex::encode(h.finalize()));
    if actual != digest {
        let _ = std::fs::remove_file(&tmp);
        return Err(SlotsError::Mismatch {
            what: format!("{}", blob.display()),
            expected: digest.into(),
            actual,
        });
    }
    std::fs::rename(&tmp, to).map_err(io(format!("failed to rename to {}", to.display())))?;
    aos_slots::record::sync_dir(to.parent().unwrap_or(Path::new(".")))
}

fn state_of(o: &Observed) -> State {
    o.state.clone().unwrap_or_default()
}

fn pending_of(o: &Observed) -> Result<Pending, RootfsError> {
    o.pending
        .clone()
        .ok_or_else(|| RootfsError::Slots(SlotsError::Record("no pending update recorded".into())))
}

/// Records the failure of `p` and removes the image and the action files.
fn fail(
    env: &RootfsEnv,
    o: &Observed,
    p: Option<Pending>,
    version: &str,
    reason: &str,
    msg: &str,
) -> Result<(), RootfsError> {
    env.crash.hit("fail")?;
    let mut state = state_of(o);
    state.failed = Some(Failure {
        version: version.into(),
        reason: reason.into(),
        message: msg.into(),
        at: o.now,
    });
    if let Some(mut p) = p {
        p.step("failed", o.now, msg);
        state.last_update = Some(p.info(env.settings.limits.max_attempts));
    }
    env.records.save_state(&state)?;
    env.crash.hit("fail:recorded")?;
    WorkDir(env.settings.work_dir.clone())
        .remove(&[DO_UPDATE, UPDATED, DO_APPLY, FAILED, IMAGE])?;
    env.records.clear_pending()?;
    tracing::warn!(version, reason, message = msg, "rootfs update failed");
    Ok(())
}

async fn stage(
    env: &RootfsEnv,
    o: &Observed,
    version: &str,
    kind: &str,
    blob: &Path,
    digest: &str,
) -> Result<Outcome, RootfsError> {
    env.crash.hit("stage")?;
    let work = WorkDir(env.settings.work_dir.clone());
    let mut p = Pending {
        version: version.into(),
        kind: kind.into(),
        digest: digest.into(),
        phase: Phase::Staging,
        attempts: 0,
        apply_boots: 0,
        boot_id: o.boot_id.clone(),
        since: None,
        health: None,
        reason: None,
        steps: Vec::new(),
    };
    p.step("stage", o.now, &format!("{kind} image of {version}"));
    env.records.save_pending(&p)?;
    let (from, to, want) = (blob.to_path_buf(), work.image(), digest.to_string());
    let copied = tokio::task::spawn_blocking(move || copy_verified(&from, &to, &want))
        .await
        .map_err(|e| SlotsError::Record(format!("the copy stopped: {e}")))?;
    if let Err(e @ SlotsError::Mismatch { .. }) = copied {
        fail(env, o, Some(p), version, e.reason(), &e.to_string())?;
        return Ok(Outcome::Progress);
    }
    copied?;
    work.set(PRESERVE, &env.settings.preserve.join("\n"))?;
    env.crash.hit("stage:copied")?;
    p.phase = Phase::Staged;
    p.attempts = 1;
    p.boot_id = o.boot_id.clone();
    p.step("reboot", env.machine.now(), "into the trial root");
    env.records.save_pending(&p)?;
    env.crash.hit("stage:recorded")?;
    work.set(DO_UPDATE, kind)?;
    Ok(Outcome::Reboot(format!("trying rootfs {version}")))
}

/// Carries out `step`.
pub async fn act(env: &Arc<RootfsEnv>, o: &Observed, step: &Step) -> Result<Outcome, RootfsError> {
    let work = WorkDir(env.settings.work_dir.clone());
    match step {
        Step::Idle | Step::Wait(_) | Step::Hold | Step::WaitRound(_) => Ok(Outcome::Nothing),
        Step::Adopt(state) => {
            env.crash.hit("adopt")?;
            env.records.save_state(state)?;
            tracing::info!(installed = ?state.installed, "adopted the root filesystem");
            Ok(Outcome::Progress)
        }
        Step::Clean => {
            env.crash.hit("clean")?;
            work.remove(&[DO_UPDATE, UPDATED, DO_APPLY, FAILED, IMAGE])?;
            Ok(Outcome::Progress)
        }
        Step::Refuse { version, message } => {
            fail(env, o, None, version, "InvalidImage", message)?;
            Ok(Outcome::Progress)
        }
        Step::Stage {
            version,
            kind,
            blob,
            digest,
        } => stage(env, o, version, kind, blob, digest).await,
        Step::Abandon => {
            work.remove(&[DO_UPDATE, IMAGE])?;
            env.records.clear_pending()?;
            Ok(Outcome::Progress)
        }
        Step::Reboot => {
            let mut p = pending_of(o)?;
            match p.phase {
                Phase::Staged => work.set(DO_UPDATE, &p.kind)?,
                Phase::Applying => {
                    if p.boot_id != o.boot_id {
                        p.apply_boots += 1;
                        p.boot_id = o.boot_id.clone();
                        env.records.save_pending(&p)?;
                    }
                    work.set(DO_APPLY, &p.kind)?
                }
                _ => work.remove(&[DO_APPLY])?,
            }
            Ok(Outcome::Reboot(
                "resuming the rootfs update's reboot".into(),
            ))
        }
        Step::BeginTrial => {
            env.crash.hit("trial")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::Trial;
            p.since = Some(o.now);
            p.boot_id = o.boot_id.clone();
            p.health = None;
            p.step("health", o.now, "the trial root runs");
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
        Step::Confirm => {
            env.crash.hit("confirm")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::Applying;
            p.apply_boots = 1;
            p.boot_id = o.boot_id.clone();
            p.step("apply", o.now, "confirmed healthy");
            env.records.save_pending(&p)?;
            env.crash.hit("confirm:recorded")?;
            work.set(DO_APPLY, &p.kind)?;
            Ok(Outcome::Reboot(format!("applying rootfs {}", p.version)))
        }
        Step::Reject { reason, message } => {
            env.crash.hit("reject")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::Reverting;
            p.reason = Some((reason.clone(), message.clone()));
            p.boot_id = o.boot_id.clone();
            p.step("revert", o.now, message);
            env.records.save_pending(&p)?;
            work.remove(&[DO_APPLY])?;
            Ok(Outcome::Reboot(format!(
                "reverting rootfs {}: {message}",
                p.version
            )))
        }
        Step::Retry => {
            env.crash.hit("retry")?;
            let mut p = pending_of(o)?;
            p.phase = Phase::Staged;
            p.attempts += 1;
            p.boot_id = o.boot_id.clone();
            p.health = None;
            p.since = None;
            p.step("reboot", o.now, &format!("attempt {}", p.attempts));
            env.records.save_pending(&p)?;
            work.remove(&[UPDATED])?;
            work.set(DO_UPDATE, &p.kind)?;
            Ok(Outcome::Reboot(format!(
                "trying rootfs {} again",
                p.version
            )))
        }
        Step::Promote => {
            env.crash.hit("promote")?;
            let mut p = pending_of(o)?;
            p.step("installed", o.now, "");
            let mut state = state_of(o);
            state.installed = Some(p.version.clone());
            state.digest = Some(p.digest.clone());
            state.failed = None;
            state.last_update = Some(p.info(env.settings.limits.max_attempts));
            env.records.save_state(&state)?;
            env.crash.hit("promote:recorded")?;
            work.remove(&[DO_UPDATE, UPDATED, DO_APPLY, FAILED, IMAGE])?;
            env.records.clear_pending()?;
            tracing::info!(version = %p.version, "rootfs update installed");
            Ok(Outcome::Progress)
        }
        Step::Fail { reason, message } => {
            let p = o.pending.clone();
            let version = p.as_ref().map(|p| p.version.clone()).unwrap_or_default();
            fail(env, o, p, &version, reason, message)?;
            Ok(Outcome::Progress)
        }
    }
}
