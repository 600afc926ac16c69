//! The one next step of the RootfsSlot, decided from what was observed without any I/O: record
//! what the root holds, then carry the pending update one step further (stage, reboot into
//! the trial, check its health, confirm or reject, retry, promote, fail) or start the update
//! the spec asks for. An update is promoted only after a boot that applied it, when the
//! running root holds its version.

use std::time::Duration;

use aos_slots::component::Blob;
use aos_slots::health::{Limits, Verdict};

use crate::observe::Observed;
use crate::records::{Phase, State};
use crate::{FULL_MEDIA_TYPE, INC_MEDIA_TYPE};

/// What a reconcile does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No state yet: record the running root's version.
    Adopt(State),
    /// Action files without a pending update: remove them.
    Clean,
    /// Nothing to do.
    Idle,
    /// The component is not there yet.
    Wait(String),
    /// This version failed before: nothing until the spec changes.
    Hold,
    /// The component cannot be a rootfs image.
    Refuse {
        /// Its version.
        version: String,
        /// Why.
        message: String,
    },
    /// Copy the image and ask for a trial boot.
    Stage {
        /// The version.
        version: String,
        /// `full` or `incremental`.
        kind: String,
        /// The blob.
        blob: std::path::PathBuf,
        /// Its digest.
        digest: String,
    },
    /// A staged update for a version no longer wanted, not yet booted: forget it.
    Abandon,
    /// The phase's action file is (re)written and the node rebooted.
    Reboot,
    /// The trial root runs: begin the probation window.
    BeginTrial,
    /// A round of health checks is due.
    Check,
    /// The next round comes after this.
    WaitRound(Duration),
    /// Healthy for the whole window: write `do_apply` and reboot.
    Confirm,
    /// Unhealthy: reboot without `do_apply` (the boot side reverts).
    Reject {
        /// CamelCase.
        reason: String,
        /// For people.
        message: String,
    },
    /// A trial cut short by a reboot: stage it again.
    Retry,
    /// Applied and running: record the version.
    Promote,
    /// Give up: record the failure, remove the image and the action files.
    Fail {
        /// CamelCase.
        reason: String,
        /// For people.
        message: String,
    },
}

fn fail(reason: &str, message: String) -> Step {
    Step::Fail {
        reason: reason.into(),
        message,
    }
}

fn health_step(o: &Observed, limits: &Limits) -> Step {
    let Some(p) = &o.pending else {
        return Step::Idle;
    };
    match limits.verdict(p.since, p.health.as_ref(), o.now) {
        Verdict::Check => Step::Check,
        Verdict::Pass => Step::Confirm,
        Verdict::Wait(d) => Step::WaitRound(d),
        Verdict::Fail(message) => Step::Reject {
            reason: "Unhealthy".into(),
            message,
        },
    }
}

/// The next step for `o`.
pub fn plan(o: &Observed, limits: &Limits) -> Step {
    let Some(state) = &o.state else {
        return Step::Adopt(State {
            installed: o.running.clone(),
            ..State::default()
        });
    };
    let f = &o.flags;
    let wanted_version = o.wanted.as_ref().map(|w| w.version.as_str());
    if let Some(p) = &o.pending {
        let same_boot = o.boot_id == p.boot_id;
        let running_it = o.running.as_deref() == Some(p.version.as_str());
        return match p.phase {
            Phase::Staging if wanted_version != Some(p.version.as_str()) => Step::Abandon,
            Phase::Staging => match &o.wanted {
                Some(w) => start(&w.version, &w.blob),
                None => Step::Abandon,
            },
            Phase::Staged if same_boot && wanted_version != Some(p.version.as_str()) => {
                Step::Abandon
            }
            Phase::Staged if same_boot => Step::Reboot,
            Phase::Staged => match &f.failed {
                Some(why) => fail("ImageRefused", format!("the boot side refused the image: {why}")),
                None if f.updated && running_it => Step::BeginTrial,
                None if f.updated => fail(
                    "TrialMismatch",
                    format!(
                        "the trial root holds version {} instead of {}",
                        o.running.as_deref().unwrap_or("unknown"),
                        p.version
                    ),
                ),
                // The boot side never acted: the update is not installed, whatever a record says.
                None if f.do_update => fail(
                    "BootSideMissing",
                    "the node booted without acting on do_update (is the boot-side script installed?)".into(),
                ),
                // No trial came up (or do_update never reached the disk): try again, bounded.
                None if p.attempts < limits.max_attempts => Step::Retry,
                None => fail(
                    "TrialFailed",
                    format!("the trial root did not come up in {} boots", p.attempts),
                ),
            },
            // Applied although the confirmation was not recorded (do_apply reached the disk).
            Phase::Trial if !same_boot && !f.any() && running_it => Step::Promote,
            Phase::Trial if !same_boot && p.attempts < limits.max_attempts => Step::Retry,
            Phase::Trial if !same_boot => fail(
                "TrialInterrupted",
                format!("the trial was cut short by a reboot {} times", p.attempts),
            ),
            Phase::Trial => health_step(o, limits),
            Phase::Applying if same_boot => Step::Reboot,
            Phase::Applying => match &f.failed {
                Some(why) => fail("ApplyRefused", format!("the boot side refused to apply: {why}")),
                None if f.do_apply && p.apply_boots < limits.max_attempts => Step::Reboot,
                None if f.do_apply => fail(
                    "ApplyIncomplete",
                    format!("{} boots did not complete the apply", p.apply_boots),
                ),
                None if running_it => Step::Promote,
                // The confirmation never reached the disk: the trial was reverted; try again.
                None if !f.any() && p.attempts < limits.max_attempts => Step::Retry,
                None => fail(
                    "ApplyMismatch",
                    format!(
                        "the root holds version {} after the apply of {}",
                        o.running.as_deref().unwrap_or("unknown"),
                        p.version
                    ),
                ),
            },
            Phase::Reverting if same_boot => Step::Reboot,
            Phase::Reverting => {
                let (reason, message) = p.reason.clone().unwrap_or_default();
                Step::Fail { reason, message }
            }
        };
    }
    if f.any() {
        return Step::Clean;
    }
    let Some(w) = &o.wanted else {
        return Step::Idle;
    };
    if state.installed.as_deref() == Some(w.version.as_str()) {
        return Step::Idle;
    }
    if state
        .failed
        .as_ref()
        .is_some_and(|x| x.version == w.version)
    {
        return Step::Hold;
    }
    start(&w.version, &w.blob)
}

fn start(version: &str, blob: &Blob) -> Step {
    match blob {
        Blob::Ready {
            path,
            digest,
            media_type,
        } => Step::Stage {
            version: version.into(),
            kind: match media_type.as_str() {
                INC_MEDIA_TYPE => "incremental",
                m => {
                    debug_assert_eq!(m, FULL_MEDIA_TYPE);
                    "full"
                }
            }
            .into(),
            blob: path.clone(),
            digest: digest.clone(),
        },
        Blob::Waiting(why) => Step::Wait(why.clone()),
        Blob::Invalid(why) => Step::Refuse {
            version: version.into(),
            message: why.clone(),
        },
    }
}
