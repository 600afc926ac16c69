//! Boot updates on the machine in a box, one scenario each: commit after probation, rollback
//! on failed health, bounded retries of an update that does not boot, images refused before a
//! byte is written, the recovery entry, and a second update into the other slot.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]
// The timings of each step are printed for the notes (`--nocapture`).
#![allow(clippy::print_stderr)]

mod rig;

use aos_api::condition::READY;
use aos_api::{ConditionStatus, UpdatePhase};
use aos_slots::sim;
use rig::{Rig, Stop};

const ZEROS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

fn ready(s: &aos_api::BootSlotStatus) -> (ConditionStatus, String) {
    let c = s.common.condition(READY).unwrap();
    (c.status, c.reason.clone())
}

#[tokio::test]
async fn the_agent_makes_its_entries_and_keeps_entries_that_are_not_its_own() {
    let mut rig = Rig::new(true).await;
    assert_eq!(rig.converge().await, Vec::<String>::new());
    assert_eq!(rig.order(), ["a", "b", "recovery", "3"]);
    let s = rig.status().await;
    assert_eq!(s.main.as_deref(), Some("a"));
    assert_eq!(s.current.as_deref(), Some("a"));
    assert_eq!(s.phase, UpdatePhase::Idle);
    let roles: Vec<_> = s
        .slots
        .iter()
        .map(|x| (x.name.as_str(), x.role.as_str()))
        .collect();
    assert_eq!(
        roles,
        [("a", "main"), ("b", "fallback"), ("recovery", "recovery")]
    );
    assert_eq!(s.slots[0].boot_entry.as_deref(), Some("Boot0000"));
    assert_eq!(
        s.slots[0].version.as_deref(),
        Some("1.0"),
        "read from the slot at adoption"
    );
    assert_eq!(s.slots[2].version.as_deref(), Some("r1"));
    assert_eq!(rig.machine.reboots(), 0);
}

#[tokio::test]
async fn an_update_is_committed_after_probation_and_then_boots_by_boot_order() {
    let mut rig = Rig::new(false).await;
    rig.converge().await;
    rig.item("2.0", true).await;
    rig.want("2.0").await;
    assert_eq!(rig.converge().await, ["b"]);
    let s = rig.status().await;
    assert_eq!(ready(&s), (ConditionStatus::True, "Installed".into()));
    assert_eq!(s.main.as_deref(), Some("b"));
    assert_eq!(s.slots[1].version.as_deref(), Some("2.0"));
    assert_eq!(
        rig.order(),
        ["b", "a", "3"],
        "new main first, old as fallback"
    );
    assert_eq!(rig.next(), None);
    for x in &s.update.as_ref().unwrap().steps {
        eprintln!(
            "boot step {:<10} {:>6} ms",
            x.step,
            x.duration_ms.unwrap_or(0)
        );
    }
    let steps: Vec<_> = s
        .update
        .as_ref()
        .unwrap()
        .steps
        .iter()
        .map(|x| x.step.as_str())
        .collect();
    assert_eq!(
        steps,
        ["write", "verify", "reboot", "health", "commit", "committed"]
    );
    assert!(
        s.update.unwrap().steps[3].duration_ms.unwrap() >= 60_000,
        "probation lasted"
    );
    // A plain reboot now boots the update by BootOrder.
    assert_eq!(rig.power_cycle().as_deref(), Some("b"));
    assert_eq!(rig.converge().await, Vec::<String>::new());
    assert_eq!(rig.machine.reboots(), 1);
}

#[tokio::test]
async fn a_second_update_goes_to_the_other_slot() {
    let mut rig = Rig::new(false).await;
    rig.item("2.0", true).await;
    rig.item("3.0", true).await;
    rig.want("2.0").await;
    assert_eq!(rig.converge().await, ["b"]);
    rig.want("3.0").await;
    assert_eq!(rig.converge().await, ["a"]);
    let s = rig.status().await;
    assert_eq!(s.main.as_deref(), Some("a"));
    assert_eq!(rig.machine.version_in("a").as_deref(), Some("3.0"));
    assert_eq!(rig.order(), ["a", "b", "3"]);
}

#[tokio::test]
async fn an_unhealthy_update_rolls_back_and_is_held_until_the_spec_changes() {
    let mut rig = Rig::new(false).await;
    rig.item("2.0", false).await;
    rig.want("2.0").await;
    assert_eq!(rig.converge().await, ["b", "a"], "tried, then rolled back");
    let s = rig.status().await;
    assert_eq!(s.phase, UpdatePhase::Failed);
    assert_eq!(ready(&s), (ConditionStatus::False, "Unhealthy".into()));
    assert_eq!(s.main.as_deref(), Some("a"));
    assert_eq!(
        rig.order(),
        ["a", "3"],
        "the failed slot is out of BootOrder"
    );
    assert_eq!(rig.next(), None);
    let reboots = rig.machine.reboots();
    assert_eq!(rig.run().await, Stop::Settled);
    assert_eq!(
        rig.machine.reboots(),
        reboots,
        "a failed version is not tried again"
    );
    // A new version is.
    rig.item("2.1", true).await;
    rig.want("2.1").await;
    assert_eq!(rig.converge().await, ["b"]);
    assert_eq!(ready(&rig.status().await).0, ConditionStatus::True);
    assert_eq!(rig.order(), ["b", "a", "3"]);
}

#[tokio::test]
async fn an_update_that_does_not_boot_is_tried_max_attempts_times_then_failed() {
    let mut rig = Rig::new(false).await;
    // A corrupt kernel: the image does not start the way a bootable one does.
    let mut img = sim::image("2.0", true, 64 << 10);
    img[0] ^= 0xff;
    rig.item_blob("os", "2.0", &aos_testkit::image::gzip(&img), None)
        .await;
    rig.want("2.0").await;
    assert_eq!(
        rig.converge().await,
        ["a", "a", "a"],
        "the firmware fell back each time"
    );
    let s = rig.status().await;
    assert_eq!(ready(&s), (ConditionStatus::False, "BootFailed".into()));
    let u = s.update.unwrap();
    assert_eq!((u.attempts, u.max_attempts), (3, 3));
    assert_eq!(s.main.as_deref(), Some("a"));
    assert_eq!(rig.machine.booted().as_deref(), Some("a"));
}

#[tokio::test]
async fn images_that_are_not_right_are_refused_before_a_byte_is_written() {
    let img = aos_testkit::image::gzip(&sim::image("2.0", true, 64 << 10));
    let cases: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        ("digest", img.clone(), Some(ZEROS), "DigestMismatch"),
        (
            "truncated",
            img[..img.len() / 2].to_vec(),
            None,
            "InvalidImage",
        ),
        ("not gzip", b"plain bytes".to_vec(), None, "InvalidImage"),
        (
            "too large",
            aos_testkit::image::gzip(&vec![7u8; (rig::SIZE + 1) as usize]),
            None,
            "ImageTooLarge",
        ),
    ];
    for (what, blob, digest, reason) in cases {
        let mut rig = Rig::new(false).await;
        rig.converge().await;
        let before = rig.slot_digest("b");
        let order = rig.order();
        rig.item_blob("os", "2.0", &blob, digest).await;
        rig.want("2.0").await;
        assert_eq!(
            rig.converge().await,
            Vec::<String>::new(),
            "{what}: no reboot"
        );
        let s = rig.status().await;
        assert_eq!(s.phase, UpdatePhase::Failed, "{what}");
        assert_eq!(ready(&s), (ConditionStatus::False, reason.into()), "{what}");
        assert_eq!(rig.slot_digest("b"), before, "{what}: slot b untouched");
        assert_eq!(rig.order(), order, "{what}: BootOrder as it was");
        assert_eq!(rig.next(), None, "{what}");
    }
}

#[tokio::test]
async fn the_recovery_entry_is_updated_without_a_reboot_and_stays_last() {
    let mut rig = Rig::new(true).await;
    let img = sim::image("r2", true, 64 << 10);
    rig.item_blob("rescue", "r2", &aos_testkit::image::gzip(&img), None)
        .await;
    rig.set(|s| {
        s.recovery = Some(aos_api::ItemRef {
            item_id: "rescue".into(),
            version: "r2".into(),
        })
    })
    .await;
    assert_eq!(rig.converge().await, Vec::<String>::new());
    let s = rig.status().await;
    assert_eq!(ready(&s).0, ConditionStatus::True);
    assert_eq!(s.slots[2].version.as_deref(), Some("r2"));
    assert_eq!(rig.machine.version_in("recovery").as_deref(), Some("r2"));
    assert_eq!(rig.order(), ["a", "b", "recovery", "3"]);
}

#[tokio::test]
async fn with_both_slots_broken_the_recovery_entry_boots() {
    let mut rig = Rig::new(true).await;
    rig.converge().await;
    rig.machine.install("a", b"garbage").unwrap();
    rig.machine.install("b", b"garbage").unwrap();
    assert_eq!(rig.power_cycle().as_deref(), Some("recovery"));
    rig.converge().await;
    assert_eq!(rig.status().await.current.as_deref(), Some("recovery"));
}

#[tokio::test]
async fn a_device_that_booted_its_fallback_or_recovery_outside_an_update_is_not_ready_and_says_why()
{
    let mut rig = Rig::new(true).await;
    rig.machine
        .install("b", &sim::image("0.9", true, 64 << 10))
        .unwrap();
    rig.converge().await;
    assert_eq!(ready(&rig.status().await).0, ConditionStatus::True);
    // Slot a stops booting (a bad block, a bad hand): the firmware falls back to b.
    rig.machine.install("a", b"not a boot image").unwrap();
    assert_eq!(rig.power_cycle().as_deref(), Some("b"));
    rig.converge().await;
    let s = rig.status().await;
    assert_eq!(s.current.as_deref(), Some("b"));
    assert_eq!(ready(&s), (ConditionStatus::False, "FallbackBooted".into()));
    // Then b too: recovery, last of the device's own entries.
    rig.machine.install("b", b"not a boot image").unwrap();
    assert_eq!(rig.power_cycle().as_deref(), Some("recovery"));
    rig.converge().await;
    let s = rig.status().await;
    assert_eq!(s.current.as_deref(), Some("recovery"));
    assert_eq!(ready(&s), (ConditionStatus::False, "RecoveryBooted".into()));
    let msg = s.common.condition(READY).unwrap().message.clone();
    assert!(msg.contains("recovery system"), "{msg}");
}

#[tokio::test]
async fn in_a_unit_a_node_reconciles_its_own_boot_slot_and_leaves_the_others() {
    use aos_reconcile::Reconciler;
    use std::sync::Arc;
    let rig = Rig::new(false).await;
    let mut settings = rig.env.settings.clone();
    settings.object = Some(rig::NAME.into());
    let env = Arc::new(aos_bootslot_controller::BootEnv {
        settings,
        efi: rig.env.efi.clone(),
        machine: rig.env.machine.clone(),
        health: rig.env.health.clone(),
        records: aos_bootslot_controller::records::Records::new(&rig.dir.path().join("records-2"))
            .unwrap(),
        crash: Default::default(),
        versions: rig.env.versions.clone(),
    });
    let reconciler = aos_bootslot_controller::BootSlotReconciler::new(env);
    let mine = rig.api.get(rig::NAME).await.unwrap();
    let mut other = mine.clone();
    other.metadata.name = "another-node".into();
    assert!(reconciler.owns(&mine));
    assert!(
        !reconciler.owns(&other),
        "another node's slot is its own to update"
    );
}
