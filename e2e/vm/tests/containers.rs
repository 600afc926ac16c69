//! Containers in the device in a box, named Given/When/Then: containerd and aosd inside the
//! VM, a service packed on the host and served by the host's registry, driven with the host's
//! aosctl; its instance across a real reboot and across a rootfs update.
// A test: a failed unwrap is a failed test; the timings are printed for the notes.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aos_e2e_vm::{skipped, Vm};
use aos_testkit::Registry;

/// The example service that counts its starts in its state file, packed in the test's directory.
fn pack_state_writer(vm: &Vm) -> PathBuf {
    let svc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/services/state-writer");
    let archive = vm.path().join("state-writer.tar");
    aosctl::pack::pack(&svc, &archive).unwrap();
    archive
}

/// The VM's aosd config with the container runtime on (the init then starts containerd).
fn with_containers(conf: String) -> String {
    let on = conf.replace(
        "[runtimes.container]\nenabled = false",
        "[runtimes.container]\nenabled = true",
    );
    assert_ne!(
        on, conf,
        "hack/vm/aosd.toml has a [runtimes.container] section"
    );
    on
}

/// The Item of the service from `source` and its instance `sw-0`.
fn service_yaml(vm: &Vm, source: &str) -> PathBuf {
    let yaml = vm.path().join("state-writer.yaml");
    std::fs::write(
        &yaml,
        format!("apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: state-writer-1.0.0\nspec:\n  itemId: state-writer\n  version: \"1.0.0\"\n  source:\n    {source}\n---\napiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: sw-0\nspec:\n  itemId: state-writer\n  version: 1.0.0\n  subjectId: vm\n  index: 0\n  runtime: container\n"),
    )
    .unwrap();
    yaml
}

/// Waits until the instance's log (read with the host's aosctl) holds `pat`; returns the log.
fn wait_log(vm: &Vm, pat: &str, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = vm.aosctl(&["logs", "sw-0"]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        if log.contains(pat) {
            return log;
        }
        assert!(
            Instant::now() < end,
            "no {pat:?} in sw-0's log within {secs} s: {log}{}\ninstances: {}\nconsole:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&vm.aosctl(&["get", "instances", "-o", "wide"]).stdout),
            vm.console()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits until the service runs in this boot, its state file counts at least `min` starts and
/// its log shows that start; returns the count and the log. (A count read before the new start
/// wrote its own is below `min`, and read again.)
fn wait_running_again(vm: &Vm, min: u32, secs: u64) -> (u32, String) {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = vm.shell(
            "grep -qs 'state-writer[.]sh' /proc/[0-9]*/cmdline && echo running; find /data/aosd -name state.dat -type f -exec cat {} +",
        );
        if let Some(n) = out
            .lines()
            .skip_while(|l| *l != "running")
            .nth(1)
            .and_then(|l| l.trim().parse::<u32>().ok())
            .filter(|n| *n >= min)
        {
            let log = String::from_utf8_lossy(&vm.aosctl(&["logs", "sw-0"]).stdout).into_owned();
            if log.contains(&format!("(start {n})")) {
                return (n, log);
            }
        }
        assert!(
            Instant::now() < end,
            "sw-0 does not run again within {secs} s: {out}\nconsole:\n{}",
            vm.console()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn given_a_service_in_the_hosts_registry_when_the_device_reboots_then_its_instance_runs_again_with_its_state(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let registry = Registry::start();
    let mut vm = Vm::new();
    let archive = pack_state_writer(&vm);
    let pushed = aos_e2e::run_ok(
        std::process::Command::new(aos_e2e::bin("aosctl"))
            .arg("push")
            .arg(&archive)
            .arg(format!("{}/aos/state-writer:1.0.0", registry.host()))
            .args(["--insecure", &registry.host()]),
    );
    let digest = pushed.trim().rsplit(' ').next().unwrap().to_string();
    // The guest reaches the host's loopback as 10.0.2.2.
    let port = registry.port;
    vm.network();
    vm.configure(|c| {
        format!(
            "{}[images]\ninsecure_registries = [\"10.0.2.2:{port}\"]\n",
            with_containers(c)
        )
    });
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 180);
    let ready = t.elapsed();
    let yaml = service_yaml(
        &vm,
        &format!("registry: 10.0.2.2:{port}/aos/state-writer:1.0.0"),
    );
    vm.aosctl_ok(&["apply", "-f", yaml.to_str().unwrap()]);
    vm.aosctl_ok(&[
        "wait",
        "item/state-writer-1.0.0",
        "--for=condition=Ready",
        "--timeout=300s",
    ]);
    let item: serde_json::Value =
        serde_json::from_str(&vm.aosctl_ok(&["get", "item", "state-writer-1.0.0", "-o", "json"]))
            .unwrap();
    assert_eq!(item["status"]["manifestDigest"], digest.as_str(), "{item}");
    let pulled = t.elapsed();
    wait_log(&vm, "(start 1)", 300);
    let started = t.elapsed();
    vm.reboot();
    let (at, _) = vm.wait_line(at, "AOS-VM: root up", 120);
    vm.wait_line(at, "AOS-VM: aosd ready", 180);
    let (n, log) = wait_running_again(&vm, 2, 300);
    assert_eq!(n, 2, "{log}");
    let again = t.elapsed();
    vm.power_cut();
    let s = |d: Duration| d.as_secs_f64();
    eprintln!(
        "scenario container-reboot: {:.0} s; aosd ready {:.0} s, pulled from the host's registry {:.0} s, running {:.0} s, running again after the reboot {:.0} s",
        s(t.elapsed()),
        s(ready),
        s(pulled),
        s(started),
        s(again)
    );
}

#[test]
fn given_a_running_instance_when_the_root_is_updated_then_it_runs_on_the_new_root_with_the_same_state(
) {
    if skipped() {
        return;
    }
    let t = Instant::now();
    let mut vm = Vm::new();
    let archive = pack_state_writer(&vm);
    let tree = vm.rootfs_tree_with("vm-2", &[("etc/aos/full-update", "from vm-2\n")]);
    let rootfs = vm.rootfs_component(&tree, false);
    let rootfs_yaml = vm.rootfs_update_yaml("vm-2", &rootfs);
    // The service's manifest is applied at the first boot, the update's later from the host.
    let yaml = service_yaml(&vm, "archive: /data/inbox/state-writer.tar");
    vm.drop_files(&[&archive, &yaml, &rootfs]);
    vm.configure(with_containers);
    vm.network();
    vm.boot();
    let (at, _) = vm.wait_line(0, "AOS-VM: aosd ready", 180);
    wait_log(&vm, "(start 1)", 300);
    let started = t.elapsed();
    vm.aosctl_ok(&["apply", "-f", rootfs_yaml.to_str().unwrap()]);
    let (at, _) = vm.wait_line(at, "AOS-VM: trial root", 300);
    let (at, line) = vm.wait_line(at, "aos-rootfs: applied", 300);
    assert!(line.contains("full image of version vm-2"), "{line}");
    let (at, _) = vm.wait_line(at, "AOS-VM: root up, version vm-2", 120);
    let (_, row) = vm.wait_row(at, "rootfs", "Idle", 180);
    assert_eq!(row[2..4], ["Idle", "vm-2"], "{row:?}");
    let updated = t.elapsed();
    // It starts once per boot that gets that far (the trial boot may commit first): what
    // counts is that it runs on the new root with the count it kept.
    // The state was kept: a count of at least 2 (the wait panics otherwise).
    let (n, log) = wait_running_again(&vm, 2, 300);
    // aosd stopped it before its reboot (no systemd here to do it): SIGTERM, and the service
    // had the time to say so.
    let stops = vm.shell("grep 'stopped the instances before the reboot' /data/log/aosd.log");
    assert!(stops.contains("tasks=1 within_grace=true"), "{stops}");
    eprintln!("sw-0 on vm-2 at start {n}; its log:\n{log}");
    let again = t.elapsed();
    vm.power_cut();
    vm.with_root(|root| {
        assert_eq!(
            std::fs::read_to_string(root.join("etc/aos/full-update")).unwrap(),
            "from vm-2\n"
        );
    });
    let s = |d: Duration| d.as_secs_f64();
    eprintln!(
        "scenario container-rootfs-update: {:.0} s; running {:.0} s, root vm-2 installed {:.0} s, running on it {:.0} s",
        s(t.elapsed()),
        s(started),
        s(updated),
        s(again)
    );
}
