//! A kill of the agent, and a power cut, at every step of a rootfs update that is healthy and
//! of one that is not: the root is always either the old tree or the new one, never a mix,
//! and once the agent has run again the update ends as it would have without the cut.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod rig;

use std::collections::BTreeSet;

use aos_api::UpdatePhase;
use aos_rootfsslot_controller::CRASH_POINTS;
use aos_testkit::tree::{diff, snapshot};
use rig::{tree, Rig, Stop};

async fn crash(healthy: bool, point: &str, cut: bool) -> Option<()> {
    let ctx = format!(
        "healthy={healthy} at {point}, {}",
        if cut { "power cut" } else { "kill" }
    );
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "2.0", healthy);
    let mut rig = Rig::new(&old).await;
    rig.env.crash.set(point);
    rig.item(&new, None).await;
    rig.want("2.0").await;
    let mut reached = false;
    for _ in 0..10 {
        match rig.run().await {
            Stop::Killed => {
                reached = true;
                break;
            }
            Stop::Reboot => rig.power_cycle(),
            Stop::Settled => break,
        }
    }
    if !reached {
        return None;
    }
    if cut {
        rig.power_cycle();
    } else {
        rig.restart();
    }
    let root = snapshot(&rig.device.root);
    let (to_old, to_new) = (diff(&snapshot(&old), &root), diff(&snapshot(&new), &root));
    assert!(
        to_old.is_empty() || to_new.is_empty(),
        "{ctx}: a mixed root: {to_old:?}"
    );
    rig.converge().await;
    let s = rig.status().await;
    let root = snapshot(&rig.device.root);
    if healthy {
        assert_eq!(s.installed_version.as_deref(), Some("2.0"), "{ctx}: {s:?}");
        assert_eq!(diff(&snapshot(&new), &root), Vec::<String>::new(), "{ctx}");
        assert_eq!(s.phase, UpdatePhase::Idle, "{ctx}");
    } else {
        assert_eq!(s.phase, UpdatePhase::Failed, "{ctx}: {s:?}");
        assert_eq!(s.installed_version.as_deref(), Some("1.0"), "{ctx}");
        assert_eq!(diff(&snapshot(&old), &root), Vec::<String>::new(), "{ctx}");
    }
    assert_eq!(
        rig.running(),
        s.installed_version.unwrap(),
        "{ctx}: status tells the truth"
    );
    assert!(
        !rig.device.work.join("image.squashfs").exists(),
        "{ctx}: image removed"
    );
    Some(())
}

/// Runs every crash point for one update; the points it reached.
async fn every_point(healthy: bool) -> BTreeSet<&'static str> {
    let mut reached = BTreeSet::new();
    for point in CRASH_POINTS {
        for cut in [false, true] {
            if crash(healthy, point, cut).await.is_some() {
                reached.insert(*point);
            }
        }
    }
    reached
}

#[tokio::test]
async fn a_kill_or_a_power_cut_at_any_step_of_a_good_update_installs_it_whole() {
    let reached = every_point(true).await;
    for p in [
        "stage",
        "stage:copied",
        "stage:recorded",
        "reboot",
        "trial",
        "check",
    ] {
        assert!(reached.contains(p), "{p} not reached: {reached:?}");
    }
    for p in ["confirm", "confirm:recorded", "promote", "promote:recorded"] {
        assert!(reached.contains(p), "{p} not reached: {reached:?}");
    }
}

#[tokio::test]
async fn a_kill_or_a_power_cut_at_any_step_of_an_unhealthy_update_leaves_the_old_root() {
    let reached = every_point(false).await;
    for p in [
        "stage",
        "reboot",
        "trial",
        "check",
        "reject",
        "fail",
        "fail:recorded",
    ] {
        assert!(reached.contains(p), "{p} not reached: {reached:?}");
    }
}
