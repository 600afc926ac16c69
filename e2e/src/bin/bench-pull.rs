//! The pull benchmark of `hack/bench/pull.sh`: an image of ≥ 300 MB uncompressed, ≥ 10,000
//! files and 3 layers in the local registry, pulled cold (alternating, several rounds, medians)
//! by aosd (to Ready), by `ctr image pull` (containerd, overlayfs snapshotter) and by
//! `skopeo copy` + `umoci unpack`, with aosd's peak RSS and the disk space each one uses.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aos_e2e::{Aosd, AosdOptions};
use aos_testkit::image::Entry;
use aos_testkit::{ImageBuilder, Registry};

const ROUNDS: usize = 3;

/// Text-like content (compresses about as well as binaries and configs do).
fn content(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "0x7f3a",
        "0000",
        "ffff",
        "\n",
        "{",
        "}",
        "=",
        ";",
    ];
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x % 11 == 0 {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
            out.push(b' ');
        }
    }
    out.truncate(len);
    out
}

fn build(dir: &Path) -> (aos_testkit::BuiltImage, u64, usize) {
    let mut b = ImageBuilder::new();
    let (mut bytes, mut files) = (0u64, 0usize);
    for layer in 0..3u64 {
        let mut entries = Vec::new();
        for i in 0..3500u64 {
            // Mostly small files, some large ones.
            let len = if i % 100 == 0 {
                2_000_000
            } else {
                10_000 + (i * 7919 % 30_000) as usize
            };
            entries.push(Entry::File(
                format!("l{layer}/d{}/f{i}", i % 50),
                content(layer * 100_000 + i, len),
                0o644,
            ));
            bytes += len as u64;
            files += 1;
        }
        b = b.layer(&entries);
    }
    (b.write_layout(dir, "1"), bytes, files)
}

fn du(p: &Path) -> u64 {
    // -x: not into mounted layers.
    let out = Command::new("du").args(["-sbx"]).arg(p).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn drop_caches() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn kb_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// aosd, cold: a fresh data dir, apply, wait for Ready. (seconds, peak RSS, disk)
fn run_aosd(registry: &Registry, reference: &str) -> (f64, u64, u64) {
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(format!(
            "[api]\ngroup = \"\"\n[images]\ninsecure_registries = [\"{}\"]\n",
            registry.host()
        )),
        ..Default::default()
    });
    let manifest = aosd.path().join("item.yaml");
    std::fs::write(
        &manifest,
        format!("apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: big\nspec:\n  itemId: big\n  version: \"1\"\n  source:\n    registry: {reference}\n"),
    )
    .unwrap();
    drop_caches();
    let t = Instant::now();
    aosd.ok(&["apply", "-f", manifest.to_str().unwrap()]);
    aosd.ok(&[
        "wait",
        "item/big",
        "--for=condition=Ready",
        "--timeout=600s",
    ]);
    let secs = t.elapsed().as_secs_f64();
    let peak = kb_field(aosd.pid(), "VmHWM:");
    let disk = du(&aosd.path().join("data/images"));
    aosd.ok(&["delete", "item", "big", "--wait"]);
    (secs, peak, disk)
}

/// containerd 1.6 with the overlayfs snapshotter, private and fresh. (seconds, disk)
fn run_ctr(reference: &str) -> (f64, u64) {
    let daemon = aos_testkit::containerd::ContainerdProcess::start();
    let sock = daemon.socket.clone();
    drop_caches();
    let t = Instant::now();
    let out = Command::new("ctr")
        .arg("-a")
        .arg(&sock)
        .args(["-n", "bench", "image", "pull", "--plain-http", reference])
        .output()
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "ctr pull failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Content store and snapshots, not the socket and state.
    let disk = du(&daemon.dir.path().join("root"));
    (secs, disk)
}

/// skopeo copy into an OCI layout, then umoci unpack. (seconds, disk)
fn run_skopeo_umoci(reference: &str) -> (f64, u64) {
    let dir = tempfile::Builder::new()
        .prefix("bench-umoci-")
        .tempdir()
        .unwrap();
    drop_caches();
    let t = Instant::now();
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:1", dir.path().join("layout").display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", dir.path().join("layout").display()))
        .arg(dir.path().join("bundle"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secs = t.elapsed().as_secs_f64();
    (secs, du(dir.path()))
}

fn main() {
    // `bench-pull --build DIR` only writes the image layout (for looking at single stages).
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 3 && args[1] == "--build" {
        build(Path::new(&args[2]));
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("bench-pull-")
        .tempdir()
        .unwrap();

    eprintln!("building the image…");
    let (built, bytes, files) = build(&work.path().join("layout"));
    let compressed: u64 = built.layers.iter().map(|l| l.2).sum();
    let registry = Registry::start();
    let reference = registry.push(&built.layout, "1", "bench/big");
    println!(
        "image: {:.0} MB uncompressed, {files} files, {} layers, {:.0} MB compressed; {ROUNDS} cold rounds, alternating; medians",
        bytes as f64 / 1e6,
        built.layers.len(),
        compressed as f64 / 1e6
    );
    let (mut a, mut c, mut u) = (Vec::new(), Vec::new(), Vec::new());
    let (mut a_rss, mut a_disk, mut c_disk, mut u_disk) = (0, 0, 0, 0);
    for round in 0..ROUNDS {
        let (s, rss, d) = run_aosd(&registry, &reference);
        a.push(s);
        a_rss = a_rss.max(rss);
        a_disk = d;
        let (s, d) = run_ctr(&reference);
        c.push(s);
        c_disk = d;
        let (s, d) = run_skopeo_umoci(&reference);
        u.push(s);
        u_disk = d;
        eprintln!(
            "round {round}: aosd {:.2} s, ctr {:.2} s, skopeo+umoci {:.2} s",
            a[round], c[round], u[round]
        );
    }
    let (am, cm, um) = (median(a), median(c), median(u));
    println!();
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "", "aosd", "ctr pull", "skopeo+umoci"
    );
    println!(
        "{:<34} {:>11.2}s {:>11.2}s {:>13.2}s",
        "cold pull to ready (median)", am, cm, um
    );
    println!(
        "{:<34} {:>11.0}M {:>11.0}M {:>13.0}M",
        "disk used",
        a_disk as f64 / 1e6,
        c_disk as f64 / 1e6,
        u_disk as f64 / 1e6
    );
    println!(
        "{:<34} {:>11.1}M {:>12} {:>14}",
        "peak RSS of aosd",
        a_rss as f64 / 1e6,
        "-",
        "-"
    );
    println!();
    println!("aosd / containerd: time {:.3}x (target <= 0.3x), disk {:.3}x (target <= 0.5x); peak RSS target <= 64 MB", am / cm, a_disk as f64 / c_disk as f64);
}
