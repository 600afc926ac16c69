//! A kill of the agent, and a power cut, at every step the BootSlot controller takes, in an
//! update that commits, one that is unhealthy and one that does not boot: the machine always
//! powers on into a system that boots and is healthy, and once the agent has run again the
//! update ends as it would have without the cut, with a status that tells the truth.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod rig;

use std::collections::BTreeSet;

use aos_api::condition::READY;
use aos_api::{ConditionStatus, UpdatePhase};
use aos_bootslot_controller::records::Phase;
use aos_bootslot_controller::CRASH_POINTS;
use aos_slots::health::Health;
use aos_slots::sim::{self, SimHealth};
use rig::{Rig, Stop};

#[derive(Clone, Copy, Debug)]
enum Update {
    Good,
    Unhealthy,
    Unbootable,
}

async fn setup(update: Update) -> Rig {
    let rig = Rig::new(false).await;
    let mut img = sim::image("2.0", !matches!(update, Update::Unhealthy), 64 << 10);
    if matches!(update, Update::Unbootable) {
        img[0] ^= 0xff;
    }
    rig.item_blob("os", "2.0", &aos_testkit::image::gzip(&img), None)
        .await;
    rig.want("2.0").await;
    rig
}

async fn healthy(rig: &Rig) -> bool {
    SimHealth(rig.machine.clone()).round().await.ok()
}

/// Runs `update` with the agent stopped at `point`; `None` when the update never gets there.
async fn crash(update: Update, point: &str, cut: bool) -> Option<()> {
    let ctx = format!(
        "{update:?} at {point}, {}",
        if cut { "power cut" } else { "kill" }
    );
    let mut rig = setup(update).await;
    rig.env.crash.set(point);
    let mut reached = false;
    for _ in 0..10 {
        match rig.run().await {
            Stop::Killed => {
                reached = true;
                break;
            }
            Stop::Reboot => {
                rig.power_cycle().unwrap();
            }
            Stop::Settled => break,
        }
    }
    if !reached {
        return None;
    }
    if cut {
        let booted = rig.power_cycle();
        assert!(booted.is_some(), "{ctx}: the machine boots");
        // An untried update boots only as the trial the records announce (BootNext).
        let trial = rig.env.records.pending().unwrap().is_some_and(|p| {
            p.phase == Phase::Armed && booted.as_deref() == Some(p.target.as_str())
        });
        assert!(
            trial || healthy(&rig).await,
            "{ctx}: booted {booted:?}, which is not healthy and not a trial"
        );
    } else {
        rig.restart();
    }
    rig.converge().await;
    let s = rig.status().await;
    let c = s.common.condition(READY).unwrap().clone();
    let booted = rig.machine.booted();
    assert_eq!(s.current, booted, "{ctx}: status names the slot that runs");
    assert_eq!(
        rig.order().first(),
        s.main.as_ref(),
        "{ctx}: main is first in BootOrder"
    );
    assert_eq!(rig.next(), None, "{ctx}: no BootNext left");
    assert!(healthy(&rig).await, "{ctx}: runs a healthy system");
    match update {
        Update::Good => {
            assert_eq!(c.status, ConditionStatus::True, "{ctx}: {c:?}");
            assert_eq!(s.main.as_deref(), Some("b"), "{ctx}");
            assert_eq!(booted.as_deref(), Some("b"), "{ctx}");
        }
        Update::Unhealthy | Update::Unbootable => {
            let reason = match update {
                Update::Unhealthy => "Unhealthy",
                _ => "BootFailed",
            };
            assert_eq!(s.phase, UpdatePhase::Failed, "{ctx}");
            assert_eq!(c.reason, reason, "{ctx}");
            assert_eq!(s.main.as_deref(), Some("a"), "{ctx}");
            assert_eq!(booted.as_deref(), Some("a"), "{ctx}");
            assert_eq!(rig.order(), ["a", "3"], "{ctx}");
        }
    }
    Some(())
}

/// Runs every crash point for one update; the points it reached.
async fn every_point(update: Update) -> BTreeSet<&'static str> {
    let mut reached = BTreeSet::new();
    for point in CRASH_POINTS {
        for cut in [false, true] {
            if crash(update, point, cut).await.is_some() {
                reached.insert(*point);
            }
        }
    }
    reached
}

fn must_reach(reached: &BTreeSet<&str>, points: &[&str]) {
    for p in points {
        assert!(reached.contains(p), "{p} not reached: {reached:?}");
    }
}

#[tokio::test]
async fn a_kill_or_a_power_cut_at_any_step_of_a_good_update_commits_it() {
    let reached = every_point(Update::Good).await;
    must_reach(
        &reached,
        &[
            "adopt",
            "entries",
            "entries:created",
            "write",
            "write:recorded",
        ],
    );
    must_reach(
        &reached,
        &[
            "verify",
            "arm",
            "arm:recorded",
            "reboot",
            "probation",
            "check",
        ],
    );
    must_reach(&reached, &["commit", "commit:recorded", "commit:order"]);
}

#[tokio::test]
async fn a_kill_or_a_power_cut_at_any_step_of_an_unhealthy_update_rolls_it_back() {
    let reached = every_point(Update::Unhealthy).await;
    must_reach(
        &reached,
        &["rollback", "rollback:recorded", "fail", "fail:recorded"],
    );
}

#[tokio::test]
async fn a_kill_or_a_power_cut_at_any_step_of_an_unbootable_update_fails_it() {
    let reached = every_point(Update::Unbootable).await;
    must_reach(
        &reached,
        &["retry", "retry:recorded", "fail", "fail:recorded"],
    );
}

#[tokio::test]
async fn a_write_abandoned_for_another_version_leaves_the_slot_out_of_boot_order() {
    let mut rig = setup(Update::Good).await;
    rig.env.crash.set("verify");
    assert_eq!(rig.run().await, Stop::Killed);
    rig.item("2.1", true).await;
    rig.want("2.1").await;
    rig.restart();
    rig.env.crash.set("abandon");
    assert_eq!(rig.run().await, Stop::Killed);
    assert_eq!(rig.order(), ["a", "3"], "half-written b is not booted");
    rig.restart();
    assert_eq!(rig.converge().await, ["b"]);
    assert_eq!(rig.machine.version_in("b").as_deref(), Some("2.1"));
}
