//! The one next step of the BootSlot, decided from what was observed without any I/O: record
//! the slots as found, put the boot entries and their order right, then either carry the
//! pending update one step further (write, arm and reboot, begin probation, check health,
//! commit, retry, roll back, fail) or start the update the spec asks for.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use aos_slots::health::{Limits, Verdict};

use crate::observe::{Blob, Observed, Wanted};
use crate::records::{Held, Phase, State, A, B, RECOVERY};

/// What a reconcile does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A slot's partition is unknown: nothing can be done (the message says why).
    Broken(String),
    /// No state yet: record the slots as they are.
    Adopt(State),
    /// Make the missing boot entries (slot, number) and write the order.
    Entries {
        /// Entries to make.
        create: Vec<(String, u16)>,
        /// The boot order to write.
        order: Vec<u16>,
    },
    /// Nothing to do.
    Idle,
    /// The component is not there yet.
    Wait(String),
    /// The update of this version failed before: nothing until the spec changes.
    Hold,
    /// The component cannot be a boot image: fail it without writing anything.
    Refuse {
        /// The slot it was for.
        target: String,
        /// Its version.
        version: String,
        /// Why.
        message: String,
    },
    /// A write for a version no longer wanted: forget it (nothing points at it).
    Abandon,
    /// Write the image to `target` (from scratch).
    Write {
        /// The slot.
        target: String,
        /// The version.
        version: String,
        /// The blob.
        blob: PathBuf,
        /// Its digest.
        digest: String,
    },
    /// Written: name the target in BootNext and reboot.
    Arm,
    /// Armed (or rolling back) in this boot and not rebooted yet: reboot.
    Reboot,
    /// Booted into the target: begin probation.
    BeginProbation,
    /// A round of health checks is due.
    Check,
    /// The next round comes after this.
    WaitRound(Duration),
    /// Healthy for the whole window: make the target main.
    Commit,
    /// The firmware fell back: try the target again.
    Retry,
    /// Give up (in main already): record the failure.
    Fail {
        /// CamelCase.
        reason: String,
        /// For people.
        message: String,
    },
    /// Unhealthy in the target: go back to main.
    RollBack {
        /// CamelCase.
        reason: String,
        /// For people.
        message: String,
    },
}

/// The entry number of each slot: the lowest existing entry booting its partition.
pub fn slot_entries(o: &Observed) -> BTreeMap<String, u16> {
    let mut m = BTreeMap::new();
    for (slot, disk) in &o.disks {
        let Ok(d) = disk else { continue };
        if let Some((n, _)) = o
            .efi
            .entries
            .iter()
            .find(|(_, e)| e.hard_drive().is_some_and(|h| h.guid == d.guid))
        {
            m.insert(slot.clone(), *n);
        }
    }
    m
}

/// The slot the machine booted, if it is one of ours.
pub fn current_slot(o: &Observed) -> Option<String> {
    let cur = o.efi.current?;
    slot_entries(o)
        .into_iter()
        .find(|(_, n)| *n == cur)
        .map(|(s, _)| s)
}

fn adopt(o: &Observed) -> State {
    let main = match current_slot(o).as_deref() {
        Some(B) => B,
        _ => A,
    };
    State {
        main: main.into(),
        slots: o
            .found
            .iter()
            .map(|(s, v)| {
                let held = Held {
                    version: v.clone(),
                    ..Held::default()
                };
                (s.clone(), held)
            })
            .collect(),
        failed: None,
        last_update: None,
    }
}

/// Entries to make and the order to write, when they are not right: main, fallback (unless
/// it is broken: being written or holding a failed update), recovery (unless broken), the
/// entries that are not ours as they were.
fn entries(o: &Observed, state: &State) -> Option<Step> {
    let mut have = slot_entries(o);
    let mut create = Vec::new();
    let mut taken: Vec<u16> = o.efi.entries.keys().copied().collect();
    for slot in o.disks.keys() {
        if have.contains_key(slot) {
            continue;
        }
        let n = (0..=u16::MAX).find(|n| !taken.contains(n))?;
        taken.push(n);
        have.insert(slot.clone(), n);
        create.push((slot.clone(), n));
    }
    let order = boot_order(state, &have, &o.efi.order);
    (!create.is_empty() || order != o.efi.order).then_some(Step::Entries { create, order })
}

/// The BootOrder `state` calls for, given the slots' entries and the order as it is: main,
/// fallback (unless broken), recovery (unless broken), then the entries that are not ours as
/// they were. The device falls back A → B → recovery before the firmware's own entries
/// (removable media, network, a shell) get a turn: under OVMF, its removable-media entry
/// booted the first loadable ESP it found when it came before recovery.
pub fn boot_order(state: &State, entries: &BTreeMap<String, u16>, current: &[u16]) -> Vec<u16> {
    let ours: Vec<u16> = entries.values().copied().collect();
    let mut order = vec![entries[&state.main]];
    if !state.broken(state.fallback()) {
        order.push(entries[state.fallback()]);
    }
    if let Some(r) = entries.get(RECOVERY).filter(|_| !state.broken(RECOVERY)) {
        order.push(*r);
    }
    order.extend(current.iter().filter(|n| !ours.contains(n)));
    order
}

fn write_or_wait(target: &str, w: &Wanted) -> Step {
    match &w.blob {
        Blob::Ready { path, digest, .. } => Step::Write {
            target: target.into(),
            version: w.version.clone(),
            blob: path.clone(),
            digest: digest.clone(),
        },
        Blob::Waiting(why) => Step::Wait(why.clone()),
        Blob::Invalid(why) => Step::Refuse {
            target: target.into(),
            version: w.version.clone(),
            message: why.clone(),
        },
    }
}

/// The next step for `o`.
pub fn plan(o: &Observed, limits: &Limits) -> Step {
    for (slot, disk) in &o.disks {
        if let Err(e) = disk {
            return Step::Broken(format!("slot {slot}: {e}"));
        }
    }
    let Some(state) = &o.state else {
        return Step::Adopt(adopt(o));
    };
    // A commit under way writes BootOrder itself (its record says the new main).
    if o.pending
        .as_ref()
        .is_some_and(|p| p.phase == Phase::Committing)
    {
        return Step::Commit;
    }
    if let Some(s) = entries(o, state) {
        return s;
    }
    let entry = slot_entries(o);
    let current = current_slot(o);
    if let Some(p) = &o.pending {
        let booted_target =
            o.efi.current.is_some() && o.efi.current == entry.get(&p.target).copied();
        let same_boot = o.boot_id == p.boot_id;
        let fell_back = || {
            if p.attempts < limits.max_attempts {
                Step::Retry
            } else {
                Step::Fail {
                    reason: "BootFailed".into(),
                    message: format!(
                        "slot {} did not boot version {} ({} attempts)",
                        p.target, p.version, p.attempts
                    ),
                }
            }
        };
        return match p.phase {
            Phase::Writing => {
                let wanted = if p.target == RECOVERY {
                    &o.wanted_recovery
                } else {
                    &o.wanted
                };
                if wanted.as_ref().map(|w| &w.version) != Some(&p.version) {
                    Step::Abandon
                } else if p.written.is_some() && p.target == RECOVERY {
                    // The recovery system does not run this agent's health gate: written and
                    // read back is all there is to check.
                    Step::Commit
                } else if p.written.is_some() {
                    Step::Arm
                } else {
                    match wanted {
                        Some(w) => write_or_wait(&p.target, w),
                        None => Step::Abandon,
                    }
                }
            }
            Phase::Armed if same_boot => Step::Reboot,
            Phase::Armed | Phase::Probation if booted_target && !same_boot => Step::BeginProbation,
            Phase::Armed | Phase::Probation if !same_boot => fell_back(),
            Phase::Armed => Step::Reboot,
            Phase::Probation => match limits.verdict(p.since, p.health.as_ref(), o.now) {
                Verdict::Check => Step::Check,
                Verdict::Pass => Step::Commit,
                Verdict::Wait(d) => Step::WaitRound(d),
                Verdict::Fail(message) => Step::RollBack {
                    reason: "Unhealthy".into(),
                    message,
                },
            },
            Phase::Committing => Step::Commit,
            Phase::RollingBack if same_boot => Step::Reboot,
            Phase::RollingBack => {
                let (reason, message) = p.reason.clone().unwrap_or_default();
                Step::Fail { reason, message }
            }
        };
    }
    let failed = |target_kind: &str, version: &str| {
        state.failed.as_ref().is_some_and(|f| {
            (f.target == RECOVERY) == (target_kind == RECOVERY) && f.version == version
        })
    };
    if let Some(w) = &o.wanted {
        if failed(A, &w.version) {
            return Step::Hold;
        }
        if state.version(&state.main) != Some(w.version.as_str()) {
            let target = match current.as_deref() {
                Some(c) if c == state.fallback() => state.main.clone(),
                _ => state.fallback().to_string(),
            };
            return write_or_wait(&target, w);
        }
    }
    // The recovery entry changes only while the pair is healthy: booted from main, idle.
    if let Some(w) = &o.wanted_recovery {
        if o.disks.contains_key(RECOVERY)
            && current.as_deref() == Some(state.main.as_str())
            && state.version(RECOVERY) != Some(w.version.as_str())
        {
            if failed(RECOVERY, &w.version) {
                return Step::Hold;
            }
            return write_or_wait(RECOVERY, w);
        }
    }
    Step::Idle
}

#[cfg(test)]
mod tests;
