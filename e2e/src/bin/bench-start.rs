//! The start benchmark of `hack/bench/start.sh` (issue 4), in one run against a private
//! containerd: apply-to-Active latency of an instance whose image is already unpacked, beside
//! `ctr run -d` of the same rootfs (the overlay aosd gave the instance, mounted again); the time
//! for 100 instances to converge; aosd's RSS with them running; aosd's CPU while idle.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::process::Command;
use std::time::{Duration, Instant};

use aos_e2e::bench::{apply_until_active, median, sleeper_instance, sleeper_item};
use aos_e2e::{Aosd, AosdOptions};
use aos_testkit::containerd::ContainerdProcess;

const ROUNDS: usize = 7;

/// With `BENCH_NETWORK=1` every instance joins the network `bench` (own namespace, veth,
/// address, DNS name, rules).
fn on_network() -> bool {
    std::env::var("BENCH_NETWORK").is_ok_and(|v| v == "1")
}

fn instance(name: &str, index: usize) -> String {
    sleeper_instance(name, index, on_network())
}

/// The `lowerdir=` option of the overlay containerd mounted for the task `id`.
fn rootfs_lowerdir(id: &str) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.contains(&format!("/{id}/rootfs ")))
        .expect("the task's rootfs is mounted");
    line.split(' ')
        .nth(3)
        .unwrap()
        .split(',')
        .find(|o| o.starts_with("lowerdir="))
        .unwrap()
        .to_string()
}

fn main() {
    let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let count: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let tmp = tempfile::tempdir().unwrap();
    let containerd = ContainerdProcess::start();
    // sleep(1) as PID 1 ignores SIGTERM: a short grace keeps the clean-up short.
    let aosd = Aosd::start_with(AosdOptions {
        containerd: Some(containerd.socket.clone()),
        config: Some(format!(
            "{}[runtimes.container]\nstop_grace = \"1s\"\n{}",
            std::env::var("BENCH_EXTRA_CONFIG").unwrap_or_default(),
            std::env::var("BENCH_CONTAINER_CONFIG").unwrap_or_default()
        )),
        ..Default::default()
    });
    aosd.wait_node_ready();
    let network = "---\napiVersion: aos.edge/v1alpha1\nkind: Network\nmetadata:\n  name: bench\nspec:\n  subnet: 172.29.200.0/24\n";
    let f = tmp.path().join("item.yaml");
    let item = sleeper_item(&aosd, tmp.path(), if on_network() { network } else { "" });
    std::fs::write(&f, item).unwrap();
    aosd.ok(&[
        "apply",
        "-f",
        f.to_str().unwrap(),
        "--wait",
        "--timeout=60s",
    ]);

    // One instance, image unpacked: apply → active; then delete and again.
    let one = tmp.path().join("one.yaml");
    std::fs::write(&one, instance("one", 0)).unwrap();
    let mut aosd_ms = Vec::new();
    for _ in 0..ROUNDS {
        let took = apply_until_active(&aosd, &["apply", "-f", one.to_str().unwrap()], 1);
        aosd_ms.push(took.as_secs_f64() * 1000.0);
        aosd.ok(&["delete", "instance", "one", "--wait", "--timeout=60s"]);
    }
    // The same rootfs for ctr: the overlay aosd built, mounted again (the run dir stays, the
    // layer stays mounted while the Item lives). Recreated from the last instance's options.
    std::fs::write(&one, instance("one", 0)).unwrap();
    apply_until_active(&aosd, &["apply", "-f", one.to_str().unwrap()], 1);
    let lowerdir = rootfs_lowerdir("one");
    let rootfs = tmp.path().join("ctr-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &lowerdir])
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(ok.success(), "mount the same rootfs for ctr");
    let ns = format!("bench-ctr-{}", std::process::id());
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("-a")
            .arg(&containerd.socket)
            .args(["-n", &ns])
            .args(args)
            .output()
            .unwrap()
    };
    let mut ctr_ms = Vec::new();
    for i in 0..ROUNDS {
        let id = format!("ctr-{i}");
        let start = Instant::now();
        let out = ctr(&[
            "run",
            "-d",
            "--rootfs",
            rootfs.to_str().unwrap(),
            &id,
            "/bin/sleep",
            "1000000",
        ]);
        ctr_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert!(
            out.status.success(),
            "ctr run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ctr(&["task", "kill", "-s", "SIGKILL", &id]);
        std::thread::sleep(Duration::from_millis(100));
        ctr(&["task", "delete", "-f", &id]);
        ctr(&["container", "delete", &id]);
    }
    let _ = Command::new("umount").arg(&rootfs).status();
    aosd.ok(&["delete", "instance", "one", "--wait", "--timeout=60s"]);

    // Many instances at once.
    let many = tmp.path().join("many.yaml");
    let text: String = (0..count)
        .map(|i| instance(&format!("many-{i}"), i))
        .collect();
    std::fs::write(&many, text).unwrap();
    let converge = apply_until_active(&aosd, &["apply", "-f", many.to_str().unwrap()], count);
    std::thread::sleep(Duration::from_secs(2));
    let rss = aos_e2e::rss_bytes(aosd.pid()).unwrap_or(0);
    let ticks = 100.0; // USER_HZ
    let before = aos_e2e::cpu_ticks(aosd.pid()).unwrap();
    std::thread::sleep(Duration::from_secs(idle_secs));
    let cpu = (aos_e2e::cpu_ticks(aosd.pid()).unwrap() - before) as f64 / ticks / idle_secs as f64
        * 100.0;

    let (a, c) = (median(aosd_ms), median(ctr_ms));
    if on_network() {
        println!("(BENCH_NETWORK=1: every aosd instance also gets its own network namespace and address; ctr's does not)");
    }
    println!("apply-to-Active (image unpacked, median of {ROUNDS}):");
    println!("  aosd apply -> active     {a:8.1} ms");
    println!("  ctr run -d (same rootfs) {c:8.1} ms");
    println!("  ratio                    {:8.2}x (target <= 1.3x)", a / c);
    println!(
        "{count} instances converge: {:.2} s",
        converge.as_secs_f64()
    );
    println!(
        "aosd RSS with {count} running: {:.1} MB (target < 30 MB)",
        rss as f64 / 1e6
    );
    println!(
        "aosd CPU over {idle_secs} s idle with {count} running: {cpu:.2}% of a core (target < 1%)"
    );

    let start = Instant::now();
    let names: Vec<String> = (0..count).map(|i| format!("many-{i}")).collect();
    let mut args = vec!["delete", "instance"];
    args.extend(names.iter().map(String::as_str));
    args.extend(["--wait", "--timeout=300s"]);
    aosd.ok(&args);
    println!(
        "{count} instances deleted: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let left = std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&*aosd.path().to_string_lossy()) && l.starts_with("overlay"))
        .count();
    assert_eq!(left, 0, "rootfs mounts left");
    if on_network() {
        aosd.ok(&["delete", "network", "bench", "--wait", "--timeout=60s"]);
    }
}
