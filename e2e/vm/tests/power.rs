//! Power cuts in the device in a box, named Given/When/Then: one update, the power cut at each
//! named step of its sequence in turn (aosd powers the VM off when it reaches the step the
//! host armed, with nothing synced; see aos_slots::crash), the device powered on again each
//! time. Every cut must leave a device that boots and carries on, and at the end the update
//! is in place and the status says so. Each prints its time and the time of each cut.
// A test: a failed unwrap is a failed test; the timings are printed for the notes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Instant;

use aos_e2e_vm::rootfs::VERSION_FILE;
use aos_e2e_vm::{skipped, Boot, Vm};

/// Every step of an update may be cut more often than `max_attempts` allows by default.
fn more_attempts(conf: String) -> String {
    conf.replace("max_attempts = 3", "max_attempts = 8")
        .replace("max_attempts = 2", "max_attempts = 8")
}

/// Cuts the power at each of `points` in turn: arms it, powers on, waits for aosd to cut the
/// power there. Returns when the last cut is done (the VM is off), with each cut's time.
fn cut_at_each(vm: &mut Vm, points: &[&str]) -> Vec<String> {
    let mut times = Vec::new();
    for point in points {
        let t = Instant::now();
        vm.arm_power_cut(point);
        vm.boot();
        vm.wait_off(600);
        times.push(format!("{point} {:.0} s", t.elapsed().as_secs_f64()));
    }
    times
}

#[test]
fn given_a_boot_update_when_the_power_is_cut_at_each_step_then_the_device_always_boots_and_commits_it(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    vm.drop_boot_update("2.0", Boot::Healthy);
    vm.configure(more_attempts);
    let cuts = cut_at_each(
        &mut vm,
        &[
            "boot:write",
            "boot:write:recorded",
            "boot:verify",
            "boot:arm",
            "boot:arm:recorded",
            "boot:reboot",
            "boot:probation",
            "boot:check",
            "boot:commit",
            "boot:commit:recorded",
            "boot:commit:order",
        ],
    );
    let from = vm.console().len();
    vm.boot();
    let (at, _) = vm.wait_line(from, "AOS-VM: bootslot ready", 600);
    let (_, row) = vm.wait_row(from.min(at), "boot", "Idle", 60);
    assert_eq!(row[2..6], ["Idle", "b", "b", "2.0"], "{row:?}");
    // The firmware's choice agrees with the status: a plain power cycle boots b.
    vm.power_cut();
    let from = vm.console().len();
    vm.boot();
    let (_, line) = vm.wait_line(from, "BdsDxe: starting Boot", 60);
    assert!(line.contains("\"aosd b\""), "{line}");
    eprintln!(
        "scenario boot-power-cuts: {:.0} s; {}",
        t.elapsed().as_secs_f64(),
        cuts.join(", ")
    );
}

#[test]
fn given_a_rootfs_update_when_the_power_is_cut_at_each_step_then_the_device_always_boots_and_applies_it(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let tree = vm.rootfs_tree_with("vm-2", &[("etc/aos/full-update", "from vm-2\n")]);
    vm.drop_rootfs_update(&tree, false);
    vm.configure(more_attempts);
    let cuts = cut_at_each(
        &mut vm,
        &[
            "rootfs:stage",
            "rootfs:stage:copied",
            "rootfs:stage:recorded",
            "rootfs:reboot",
            "rootfs:trial",
            "rootfs:check",
            "rootfs:confirm",
            "rootfs:confirm:recorded",
            "rootfs:reboot",
            "rootfs:promote",
            "rootfs:promote:recorded",
        ],
    );
    let from = vm.console().len();
    vm.boot();
    let (at, line) = vm.wait_line(from, "AOS-VM: root up, version", 300);
    assert!(line.ends_with("vm-2"), "{line}");
    let (_, row) = vm.wait_row(at, "rootfs", "Idle", 300);
    assert_eq!(row[2..6], ["Idle", "vm-2", "<none>", "none"], "{row:?}");
    vm.power_cut();
    vm.with_root(|root| {
        let v = std::fs::read_to_string(root.join(VERSION_FILE)).unwrap();
        assert_eq!(v.trim(), "vm-2");
        assert!(root.join("etc/aos/full-update").exists());
        assert!(root.join("usr/local/bin/aosd").exists());
    });
    eprintln!(
        "scenario rootfs-power-cuts: {:.0} s; {}",
        t.elapsed().as_secs_f64(),
        cuts.join(", ")
    );
}
