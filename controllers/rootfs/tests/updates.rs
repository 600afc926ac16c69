//! Rootfs updates on a device in a box with the real boot side: full and incremental updates
//! tried, confirmed healthy and applied; an unhealthy trial reverted; the reference's bug (a
//! restart between `do_update` and the reboot) fixed; a boot without the boot side never
//! promotes; a second update waits for the pending one.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
// The timings of each step are printed for the notes (`--nocapture`).
#![allow(clippy::print_stderr)]

mod rig;

use aos_api::condition::READY;
use aos_api::{ConditionStatus, RootfsAction, UpdatePhase};
use aos_testkit::tree::{diff, snapshot};
use rig::{tree, Rig, Stop};

fn ready(s: &aos_api::RootfsSlotStatus) -> (ConditionStatus, String) {
    let c = s.common.condition(READY).unwrap();
    (c.status, c.reason.clone())
}

#[tokio::test]
async fn a_full_update_is_tried_confirmed_and_applied() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "2.0", true);
    let mut rig = Rig::new(&old).await;
    rig.converge().await;
    assert_eq!(rig.status().await.installed_version.as_deref(), Some("1.0"));
    rig.item(&new, None).await;
    rig.want("2.0").await;
    assert_eq!(rig.converge().await, 2, "a trial boot and an apply boot");
    let s = rig.status().await;
    assert_eq!(ready(&s), (ConditionStatus::True, "Installed".into()));
    assert_eq!(s.installed_version.as_deref(), Some("2.0"));
    assert_eq!((s.phase, s.action), (UpdatePhase::Idle, RootfsAction::None));
    for x in &s.update.as_ref().unwrap().steps {
        eprintln!(
            "rootfs step {:<10} {:>6} ms",
            x.step,
            x.duration_ms.unwrap_or(0)
        );
    }
    let steps: Vec<_> = s
        .update
        .unwrap()
        .steps
        .iter()
        .map(|x| x.step.clone())
        .collect();
    assert_eq!(steps, ["stage", "reboot", "health", "apply", "installed"]);
    assert_eq!(rig.running(), "2.0");
    assert_eq!(
        diff(&snapshot(&new), &snapshot(&rig.device.root)),
        Vec::<String>::new()
    );
    assert!(!rig.device.work.join("image.squashfs").exists());
}

#[tokio::test]
async fn an_incremental_update_is_applied_over_its_base() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "1.1", true);
    let mut rig = Rig::new(&old).await;
    rig.item(&new, Some(&old)).await;
    rig.want("1.1").await;
    rig.converge().await;
    assert_eq!(rig.status().await.installed_version.as_deref(), Some("1.1"));
    assert_eq!(
        diff(&snapshot(&new), &snapshot(&rig.device.root)),
        Vec::<String>::new()
    );
}

#[tokio::test]
async fn an_unhealthy_trial_is_reverted_and_held() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "2.0", false);
    let mut rig = Rig::new(&old).await;
    let before = snapshot(&rig.device.root);
    rig.item(&new, None).await;
    rig.want("2.0").await;
    rig.converge().await;
    let s = rig.status().await;
    assert_eq!(s.phase, UpdatePhase::Failed);
    assert_eq!(ready(&s), (ConditionStatus::False, "Unhealthy".into()));
    assert_eq!(s.installed_version.as_deref(), Some("1.0"));
    assert_eq!(rig.running(), "1.0");
    assert_eq!(
        diff(&before, &snapshot(&rig.device.root)),
        Vec::<String>::new()
    );
    let reboots = rig.device.reboots();
    assert_eq!(rig.run().await, Stop::Settled);
    assert_eq!(rig.device.reboots(), reboots, "held until the spec changes");
}

#[tokio::test]
async fn a_restart_between_do_update_and_the_reboot_never_promotes_the_update() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "2.0", true);
    let mut rig = Rig::new(&old).await;
    rig.item(&new, None).await;
    rig.want("2.0").await;
    rig.env.crash.set("reboot");
    assert_eq!(rig.run().await, Stop::Killed);
    assert!(rig.device.work.join("do_update").exists());
    rig.restart();
    // Same boot: the agent reboots again; it does not call the update installed.
    assert_eq!(rig.run().await, Stop::Reboot);
    assert_eq!(rig.status().await.installed_version.as_deref(), Some("1.0"));
    rig.power_cycle();
    rig.converge().await;
    assert_eq!(rig.status().await.installed_version.as_deref(), Some("2.0"));
}

#[tokio::test]
async fn a_boot_that_ignored_do_update_fails_the_update_and_leaves_the_root() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let new = tree(src.path(), "2.0", true);
    let mut rig = Rig::new(&old).await;
    let before = snapshot(&rig.device.root);
    rig.item(&new, None).await;
    rig.want("2.0").await;
    rig.device
        .no_boot_side
        .store(true, std::sync::atomic::Ordering::SeqCst);
    rig.converge().await;
    let s = rig.status().await;
    assert_eq!(
        ready(&s),
        (ConditionStatus::False, "BootSideMissing".into())
    );
    assert_eq!(s.installed_version.as_deref(), Some("1.0"));
    assert_eq!(
        diff(&before, &snapshot(&rig.device.root)),
        Vec::<String>::new()
    );
    assert!(!rig.device.work.join("do_update").exists());
}

#[tokio::test]
async fn a_second_update_waits_for_the_pending_one() {
    let src = tempfile::tempdir().unwrap();
    let old = tree(src.path(), "1.0", true);
    let v2 = tree(src.path(), "2.0", true);
    let v3 = tree(src.path(), "3.0", true);
    let mut rig = Rig::new(&old).await;
    rig.item(&v2, None).await;
    rig.item(&v3, None).await;
    rig.want("2.0").await;
    assert_eq!(rig.run().await, Stop::Reboot);
    rig.power_cycle();
    rig.run().await; // one health round in the trial
    rig.want("3.0").await;
    rig.run().await;
    let s = rig.status().await;
    assert_eq!(
        ready(&s),
        (ConditionStatus::False, "UpdatePending".into()),
        "{s:?}"
    );
    assert_eq!(s.pending_version.as_deref(), Some("2.0"));
    rig.converge().await;
    assert_eq!(rig.status().await.installed_version.as_deref(), Some("3.0"));
    assert_eq!(rig.running(), "3.0");
}
