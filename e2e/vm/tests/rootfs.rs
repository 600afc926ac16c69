//! Rootfs updates in the device in a box, named Given/When/Then: the trial root mounted by the
//! initramfs (deploy/aos-rootfs), aosd's health gate inside it, the apply at the next boot, and
//! the root partition read back on the host afterwards. Each prints its time.
// A test: a failed unwrap is a failed test; the timings are printed for the notes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Instant;

use aos_e2e_vm::rootfs::VERSION_FILE;
use aos_e2e_vm::{skipped, Vm};

fn version(root: &std::path::Path) -> String {
    std::fs::read_to_string(root.join(VERSION_FILE))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn given_a_full_rootfs_update_when_its_trial_is_healthy_then_the_root_partition_holds_it() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let tree = vm.rootfs_tree_with("vm-2", &[("etc/aos/full-update", "from vm-2\n")]);
    vm.drop_rootfs_update(&tree, false);
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 180);
    let ready = t.elapsed();
    let (at, _) = vm.wait_line(at, "reboot: Restarting system", 300);
    let staged = t.elapsed();
    let (at, _) = vm.wait_line(at, "AOS-VM: trial root", 120);
    let (at, _) = vm.wait_line(at, "AOS-VM: root up, version vm-2", 60);
    let trial = t.elapsed();
    let (at, line) = vm.wait_line(at, "aos-rootfs: applied", 300);
    assert!(line.contains("full image of version vm-2"), "{line}");
    let applied = t.elapsed();
    let (at, _) = vm.wait_line(at, "AOS-VM: root up, version vm-2", 120);
    let (_, row) = vm.wait_row(at, "rootfs", "Idle", 180);
    // NAME ITEM PHASE INSTALLED PENDING ACTION
    assert_eq!(row[2..6], ["Idle", "vm-2", "<none>", "none"], "{row:?}");
    vm.power_cut();
    vm.with_root(|root| {
        assert_eq!(version(root), "vm-2");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/aos/full-update")).unwrap(),
            "from vm-2\n"
        );
        assert!(root.join("usr/local/bin/aosd").exists());
        assert!(
            !root.join(".aos-image").exists(),
            "the image's own file stays out"
        );
    });
    let s = |d: std::time::Duration| d.as_secs_f64();
    eprintln!(
        "scenario rootfs-full: {:.0} s; aosd ready {:.0} s, staged and rebooting {:.0} s, trial root up {:.0} s, applied {:.0} s, installed {:.0} s",
        s(t.elapsed()),
        s(ready),
        s(staged),
        s(trial),
        s(applied),
        s(t.elapsed())
    );
}

#[test]
fn given_an_incremental_rootfs_update_when_it_is_applied_then_added_changed_and_deleted_files_are_on_the_root(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let tree = vm.rootfs_tree_with("vm-2", &[("etc/aos/added", "added in vm-2\n")]);
    let toml = tree.join("etc/aosd/aosd.toml");
    let changed = format!(
        "{}# changed in vm-2\n",
        std::fs::read_to_string(&toml).unwrap()
    );
    std::fs::write(&toml, &changed).unwrap();
    // A busybox applet link the new version no longer has.
    std::fs::remove_file(tree.join("bin/vi")).unwrap();
    vm.drop_rootfs_update(&tree, true);
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: trial root", 300);
    let (at, line) = vm.wait_line(at, "aos-rootfs: applied", 300);
    assert!(line.contains("incremental image of version vm-2"), "{line}");
    let (_, row) = vm.wait_row(at, "rootfs", "Idle", 180);
    assert_eq!(row[2..4], ["Idle", "vm-2"], "{row:?}");
    vm.power_cut();
    vm.with_root(|root| {
        assert_eq!(version(root), "vm-2");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/aos/added")).unwrap(),
            "added in vm-2\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/aosd/aosd.toml")).unwrap(),
            changed
        );
        assert!(root.join("bin/vi").symlink_metadata().is_err(), "deleted");
        assert!(root.join("bin/sh").symlink_metadata().is_ok(), "kept");
        assert!(root.join("usr/local/bin/aosd").exists(), "kept");
    });
    eprintln!(
        "scenario rootfs-incremental: {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn given_a_rootfs_update_whose_trial_is_unhealthy_when_it_fails_then_the_root_is_reverted() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let tree = vm.rootfs_tree_with("vm-2", &[("etc/aos/unhealthy", "")]);
    vm.drop_rootfs_update(&tree, true);
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: trial root", 300);
    let (at, _) = vm.wait_line(at, "AOS-VM: root up, version vm-2", 60);
    let (at, _) = vm.wait_line(
        at,
        "aos-rootfs: the trial was not confirmed: reverting",
        300,
    );
    let (at, _) = vm.wait_line(at, "AOS-VM: root up, version vm-1", 120);
    let (_, row) = vm.wait_row(at, "rootfs", "Failed", 180);
    // NAME ITEM PHASE INSTALLED ... ERROR
    assert_eq!(row[2..4], ["Failed", "vm-1"], "{row:?}");
    assert_eq!(row.last().unwrap(), "Unhealthy", "{row:?}");
    vm.power_cut();
    vm.with_root(|root| {
        assert_eq!(version(root), "vm-1");
        assert!(!root.join("etc/aos/unhealthy").exists());
    });
    eprintln!(
        "scenario rootfs-unhealthy-revert: {:.0} s",
        t.elapsed().as_secs_f64()
    );
}
