//! The plan's decisions, one situation each, without any I/O.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{BootSlotSpec, Object};
use aos_slots::efi::{HardDrive, LoadOption};
use chrono::Utc;

use aos_slots::health::Limits;

use super::*;
use crate::observe::{Blob, Efi, Observed, Wanted};
use crate::records::{HealthRecord, Pending, Phase, State};

const LIMITS: Limits = Limits {
    max_attempts: 2,
    probation: Duration::from_secs(60),
    interval: Duration::from_secs(20),
};

fn disk(n: u32) -> HardDrive {
    HardDrive {
        number: n,
        start: 2048 * n as u64,
        size: 2048,
        guid: uuid::Uuid::from_u128(n as u128),
    }
}

/// Slots a (Boot0001), b (Boot0002), recovery (Boot0005); booted from `current`; main a.
fn observed(current: u16) -> Observed {
    let mut entries = BTreeMap::new();
    for (n, d) in [(1u16, 1u32), (2, 2), (5, 3)] {
        entries.insert(n, LoadOption::new("x", disk(d), "\\l"));
    }
    let disks = [("a", 1), ("b", 2), ("recovery", 3)]
        .into_iter()
        .map(|(s, d)| (s.to_string(), Ok(disk(d))))
        .collect();
    let mut state = State {
        main: "a".into(),
        ..State::default()
    };
    for (s, v) in [("a", "1"), ("b", "1"), ("recovery", "r1")] {
        state.slots.insert(
            s.into(),
            Held {
                version: Some(v.into()),
                ..Held::default()
            },
        );
    }
    Observed {
        obj: Arc::new(Object::new("node", BootSlotSpec::default())),
        now: Utc::now(),
        boot_id: "boot-2".into(),
        efi: Efi {
            current: Some(current),
            next: None,
            order: vec![1, 2, 5],
            entries,
        },
        disks,
        state: Some(state),
        pending: None,
        found: BTreeMap::new(),
        wanted: None,
        wanted_recovery: None,
    }
}

fn wanted(v: &str) -> Option<Wanted> {
    Some(Wanted {
        version: v.into(),
        blob: Blob::Ready {
            path: "/blob".into(),
            digest: "sha256:x".into(),
            media_type: crate::BOOT_MEDIA_TYPE.into(),
        },
    })
}

fn pending(phase: Phase, attempts: u32, boot: &str) -> Pending {
    Pending {
        target: "b".into(),
        version: "2".into(),
        phase,
        attempts,
        boot_id: boot.into(),
        since: None,
        health: None,
        reason: None,
        written: Some("sha256:y".into()),
        steps: Vec::new(),
        previous: Held::default(),
    }
}

#[test]
fn an_update_goes_to_the_slot_that_is_not_running() {
    let mut o = observed(1);
    o.wanted = wanted("2");
    assert!(matches!(plan(&o, &LIMITS), Step::Write { target, .. } if target == "b"));
    // Booted from the fallback (main did not boot): the update goes to main's slot.
    let mut o = observed(2);
    o.wanted = wanted("2");
    assert!(matches!(plan(&o, &LIMITS), Step::Write { target, .. } if target == "a"));
}

#[test]
fn the_boot_order_is_main_fallback_recovery_others_and_a_broken_slot_is_left_out() {
    let mut o = observed(1);
    o.efi.order = vec![7, 5, 2, 1];
    assert_eq!(
        plan(&o, &LIMITS),
        Step::Entries {
            create: vec![],
            order: vec![1, 2, 5, 7]
        }
    );
    o.state.as_mut().unwrap().slots.get_mut("b").unwrap().broken = true;
    assert!(matches!(plan(&o, &LIMITS), Step::Entries { order, .. } if order == [1, 5, 7]));
}

#[test]
fn a_missing_entry_is_made_with_the_lowest_free_number() {
    let mut o = observed(1);
    o.efi.entries.remove(&2);
    o.efi.order = vec![1, 5];
    assert_eq!(
        plan(&o, &LIMITS),
        Step::Entries {
            create: vec![("b".into(), 0)],
            order: vec![1, 0, 5]
        }
    );
}

#[test]
fn armed_in_this_boot_reboots_and_booted_into_the_target_begins_probation() {
    let mut o = observed(1);
    o.wanted = wanted("2");
    o.pending = Some(pending(Phase::Armed, 1, "boot-2"));
    assert_eq!(plan(&o, &LIMITS), Step::Reboot);
    let mut o = observed(2);
    o.wanted = wanted("2");
    o.pending = Some(pending(Phase::Armed, 1, "boot-1"));
    assert_eq!(plan(&o, &LIMITS), Step::BeginProbation);
}

#[test]
fn a_fall_back_is_retried_until_max_attempts_then_fails() {
    let mut o = observed(1);
    o.pending = Some(pending(Phase::Armed, 1, "boot-1"));
    assert_eq!(plan(&o, &LIMITS), Step::Retry);
    o.pending = Some(pending(Phase::Armed, 2, "boot-1"));
    assert!(matches!(plan(&o, &LIMITS), Step::Fail { reason, .. } if reason == "BootFailed"));
}

#[test]
fn probation_commits_only_after_a_healthy_round_at_the_end_of_the_window() {
    let mut o = observed(2);
    let start = o.now - chrono::Duration::seconds(61);
    let mut p = pending(Phase::Probation, 1, "boot-2");
    p.since = Some(start);
    p.health = Some(HealthRecord {
        ok: true,
        at: start + chrono::Duration::seconds(45),
        message: String::new(),
    });
    o.pending = Some(p.clone());
    assert_eq!(
        plan(&o, &LIMITS),
        Step::Check,
        "the last round is before the end"
    );
    p.health.as_mut().unwrap().at = start + chrono::Duration::seconds(60);
    o.pending = Some(p.clone());
    assert_eq!(plan(&o, &LIMITS), Step::Commit);
    p.health.as_mut().unwrap().ok = false;
    o.pending = Some(p);
    assert!(matches!(plan(&o, &LIMITS), Step::RollBack { .. }));
}

#[test]
fn a_commit_under_way_comes_before_the_boot_order_check() {
    let mut o = observed(1);
    o.efi.order = vec![2, 1, 5];
    o.pending = Some(pending(Phase::Committing, 1, "boot-1"));
    assert_eq!(plan(&o, &LIMITS), Step::Commit);
}

#[test]
fn the_recovery_entry_is_written_only_from_main_with_the_pair_idle() {
    let mut o = observed(1);
    o.wanted_recovery = wanted("r2");
    assert!(matches!(plan(&o, &LIMITS), Step::Write { target, .. } if target == "recovery"));
    let mut o = observed(2);
    o.wanted_recovery = wanted("r2");
    assert_eq!(plan(&o, &LIMITS), Step::Idle, "booted from the fallback");
    let mut o = observed(1);
    o.wanted_recovery = wanted("r2");
    o.wanted = wanted("2");
    assert!(matches!(plan(&o, &LIMITS), Step::Write { target, .. } if target == "b"));
}

#[test]
fn a_failed_version_is_held_until_the_spec_asks_for_another() {
    let mut o = observed(1);
    o.state.as_mut().unwrap().failed = Some(crate::records::Failure {
        target: "b".into(),
        version: "2".into(),
        reason: "Unhealthy".into(),
        message: String::new(),
        at: o.now,
    });
    o.wanted = wanted("2");
    assert_eq!(plan(&o, &LIMITS), Step::Hold);
    o.wanted = wanted("3");
    assert!(matches!(plan(&o, &LIMITS), Step::Write { .. }));
}
