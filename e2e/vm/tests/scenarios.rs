//! The device in a box, one scenario per test, named Given/When/Then: real OVMF firmware, a
//! real kernel, real reboots. Each prints its time.
// A test: a failed unwrap is a failed test; the timings are printed for the notes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::time::Instant;

use aos_e2e_vm::{skipped, Boot, Vm};

#[test]
fn given_a_new_device_when_it_boots_twice_then_the_firmware_boots_the_entry_aosd_made() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 120);
    let ready = t.elapsed();
    let (_, row) = vm.wait_row(at, "boot", "Idle", 60);
    assert_eq!(
        row[2..6],
        ["Idle", "<none>", "a", "1.0"],
        "not booted by our entry yet: {row:?}"
    );
    // Ready once the boot entries and BootOrder are written.
    vm.wait_line(at, "AOS-VM: bootslot ready", 60);
    vm.power_cut();
    let from = vm.console().len();
    vm.boot();
    let (at, line) = vm.wait_line(from, "BdsDxe: starting Boot", 60);
    assert!(line.contains("\"aosd a\" from HD(1,GPT,"), "{line}");
    let (_, row) = vm.wait_row(at, "boot", "Idle", 120);
    // NAME ITEM PHASE CURRENT MAIN VERSION ...
    assert_eq!(
        row[0..6],
        ["vm", "<none>", "Idle", "a", "a", "1.0"],
        "{row:?}"
    );
    eprintln!(
        "scenario boots-twice: {:.0} s (first boot to aosd ready {:.0} s)",
        t.elapsed().as_secs_f64(),
        ready.as_secs_f64()
    );
}

#[test]
fn given_a_healthy_boot_update_when_it_is_applied_then_it_is_committed_across_a_real_reboot() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = update(Boot::Healthy);
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 120);
    let ready = t.elapsed();
    let (at, _) = vm.wait_row(at, "boot", "Writing", 120);
    let writing = t.elapsed();
    let (at, _) = vm.wait_line(at, "reboot: Restarting system", 300);
    let rebooting = t.elapsed();
    let down = vm.time_at(at);
    let (at, line) = vm.wait_line(at, "BdsDxe: starting Boot", 60);
    assert!(line.contains("\"aosd b\""), "BootNext boots slot b: {line}");
    let firmware = vm.time_at(at);
    let (at, _) = vm.wait_line(at, "AOS-VM: initramfs up", 60);
    let kernel = vm.time_at(at);
    let (at, _) = vm.wait_line(at, "AOS-VM: aosd ready", 120);
    let aosd = vm.time_at(at);
    // (Probation lasts 5 s: the status' steps below show it, a row of it may never print.)
    let (at, row) = vm.wait_row(at, "boot", "Idle", 120);
    assert_eq!(row[2..6], ["Idle", "b", "b", "2.0"], "{row:?}");
    let done = t.elapsed();
    // The update's own record of its steps, as the committed device reports it.
    let (_, line) = vm.wait_line(at, "AOS-VM: bootslot-json ", 120);
    let json: serde_json::Value =
        serde_json::from_str(line.split_once("bootslot-json ").unwrap().1).unwrap();
    let steps: Vec<String> = json["status"]["update"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| match s["durationMs"].as_u64() {
            Some(ms) => format!("{} {ms} ms", s["step"].as_str().unwrap()),
            None => s["step"].as_str().unwrap().to_string(),
        })
        .collect();
    for step in ["write ", "verify ", "reboot ", "health ", "commit"] {
        assert!(
            steps.iter().any(|s| s.starts_with(step)),
            "{step}: {steps:?}"
        );
    }
    // A plain power cycle now boots b by BootOrder.
    vm.power_cut();
    let from = vm.console().len();
    vm.boot();
    let (_, line) = vm.wait_line(from, "BdsDxe: starting Boot", 60);
    assert!(
        line.contains("\"aosd b\""),
        "BootOrder boots slot b: {line}"
    );
    let s = |d: std::time::Duration| d.as_secs_f64();
    eprintln!(
        "scenario boot-update: {:.0} s; from power-on: aosd ready {:.0} s, writing {:.0} s, reboot {:.0} s, committed {:.0} s",
        s(t.elapsed()),
        s(ready),
        s(writing),
        s(rebooting),
        s(done)
    );
    eprintln!(
        "  the trial boot: firmware {:.1} s, kernel and initramfs {:.1} s, root and aosd ready {:.1} s; the update's steps (status.update.steps): {}",
        s(firmware.saturating_sub(down)),
        s(kernel.saturating_sub(firmware)),
        s(aosd.saturating_sub(kernel)),
        steps.join(", ")
    );
}

/// Drops a boot update of `kind` into a new device and boots it; the device.
fn update(kind: Boot) -> Vm {
    let mut vm = Vm::new();
    vm.drop_boot_update("2.0", kind);
    vm.boot();
    vm
}

#[test]
fn given_an_unhealthy_boot_update_when_its_trial_fails_then_the_device_goes_back_to_the_old_slot() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = update(Boot::Unhealthy);
    let (at, _) = vm.wait_row(0, "boot", "Writing", 180);
    let (at, line) = vm.wait_line(at, "BdsDxe: starting Boot", 180);
    assert!(
        line.contains("\"aosd b\""),
        "the trial boots slot b: {line}"
    );
    // The health round fails, the agent rolls back and reboots (the rows of those short
    // phases may not print; the Failed row below names the reason).
    let (at, line) = vm.wait_line(at, "BdsDxe: starting Boot", 300);
    assert!(
        line.contains("\"aosd a\""),
        "the rollback boots slot a: {line}"
    );
    let (_, row) = vm.wait_row(at, "boot", "Failed", 120);
    assert_eq!(row[2..6], ["Failed", "a", "a", "1.0"], "{row:?}");
    assert_eq!(row.last().unwrap(), "Unhealthy", "{row:?}");
    vm.power_cut();
    let from = vm.console().len();
    vm.boot();
    let (_, line) = vm.wait_line(from, "BdsDxe: starting Boot", 60);
    assert!(
        line.contains("\"aosd a\""),
        "slot b is out of BootOrder: {line}"
    );
    eprintln!(
        "scenario unhealthy-rollback: {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn given_a_boot_update_that_does_not_boot_when_the_firmware_falls_back_then_it_is_tried_three_times_and_failed(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let vm = update(Boot::Unbootable);
    let (mut at, _) = vm.wait_row(0, "boot", "Writing", 180);
    for attempt in 1..=3 {
        let (next, line) = vm.wait_line(at, "BdsDxe: failed to load Boot", 180);
        assert!(line.contains("\"aosd b\""), "attempt {attempt}: {line}");
        let (next, line) = vm.wait_line(next, "BdsDxe: starting Boot", 60);
        assert!(
            line.contains("\"aosd a\""),
            "attempt {attempt} falls back to a: {line}"
        );
        at = next;
    }
    let (_, row) = vm.wait_row(at, "boot", "Failed", 120);
    assert_eq!(row[2..6], ["Failed", "a", "a", "1.0"], "{row:?}");
    eprintln!(
        "scenario unbootable-retries: {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

#[test]
fn given_both_boot_slots_broken_when_the_device_boots_then_the_recovery_entry_boots() {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 180);
    // Ready once the boot entries (recovery among them) and BootOrder are written.
    vm.wait_line(at, "AOS-VM: bootslot ready", 120);
    vm.power_cut();
    // Both slots now hold a loader the firmware cannot load.
    vm.break_boot_partition(1);
    vm.break_boot_partition(2);
    let from = vm.console().len();
    vm.boot();
    let (at, line) = vm.wait_line(from, "BdsDxe: failed to load Boot", 60);
    assert!(line.contains("\"aosd a\""), "{line}");
    let (at, line) = vm.wait_line(at, "BdsDxe: failed to load Boot", 60);
    assert!(line.contains("\"aosd b\""), "{line}");
    let (at, line) = vm.wait_line(at, "BdsDxe: starting Boot", 120);
    assert!(line.contains("\"aosd recovery\""), "{line}");
    let (_, row) = vm.wait_row(at, "boot", "Idle", 180);
    // NAME ITEM PHASE CURRENT MAIN VERSION PENDING AGE ATTEMPTS RECOVERY HEALTH ERROR
    assert_eq!(row[3], "recovery", "{row:?}");
    assert_eq!(row[9], "recovery-1", "{row:?}");
    // Running recovery is no Ready device: the reason says what happened.
    vm.wait_line(at, "AOS-VM: bootslot RecoveryBooted", 60);
    eprintln!("scenario recovery: {:.0} s", t.elapsed().as_secs_f64());
}
