//! The pull benchmark of `hack/bench/pull.sh`: an image of ≥ 300 MB uncompressed, ≥ 10,000
//! files and 3 layers in the local registry (or, with `BENCH_PULL_IMAGE=host`, three layers of
//! the host's own files: /usr/share, /usr/include, /usr/lib/python3*), pulled cold
//! (alternating, several rounds, medians) by aosd converting while it downloads, by aosd
//! converting after the download (the previous configuration), by `ctr image pull`
//! (containerd, overlayfs snapshotter) and by `skopeo copy` + `umoci unpack`, with aosd's peak
//! RSS (and its converter's, tar2sqfs) and the disk space each one uses.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use aos_e2e::{Aosd, AosdOptions};
use aos_testkit::image::Entry;
use aos_testkit::{ImageBuilder, Registry};

/// Cold rounds of each (`BENCH_PULL_ROUNDS` overrides).
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

/// Regular files and symlinks under `root`, as entries under `prefix` (unreadable ones and
/// other kinds skipped).
fn host_entries(root: &Path, prefix: &str, out: &mut Vec<Entry>, bytes: &mut u64) {
    let Ok(dir) = std::fs::read_dir(root) else {
        return;
    };
    let mut children: Vec<_> = dir.flatten().collect();
    children.sort_by_key(|e| e.file_name());
    for e in children {
        let path = e.path();
        let name = format!("{prefix}/{}", e.file_name().to_string_lossy());
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        use std::os::unix::fs::PermissionsExt;
        if meta.is_dir() {
            host_entries(&path, &name, out, bytes);
        } else if meta.file_type().is_symlink() {
            if let Ok(target) = std::fs::read_link(&path) {
                let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
                out.push(Entry::Symlink(
                    leak(name),
                    leak(target.display().to_string()),
                ));
            }
        } else if meta.is_file() {
            if let Ok(data) = std::fs::read(&path) {
                *bytes += data.len() as u64;
                out.push(Entry::File(name, data, meta.permissions().mode() & 0o7777));
            }
        }
    }
}

/// Three layers of the host's own files.
fn build_host(dir: &Path) -> (aos_testkit::BuiltImage, u64, usize) {
    let python = std::fs::read_dir("/usr/lib")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3."))
        })
        .max()
        .unwrap_or_else(|| "/usr/lib/python3".into());
    let mut b = ImageBuilder::new();
    let (mut bytes, mut files) = (0u64, 0usize);
    for root in [Path::new("/usr/share"), Path::new("/usr/include"), &python] {
        let mut entries = Vec::new();
        let prefix = root.display().to_string();
        host_entries(
            root,
            prefix.trim_start_matches('/'),
            &mut entries,
            &mut bytes,
        );
        files += entries.len();
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

/// The highest sum of the resident memory of `parent` and of every `tar2sqfs` child it runs
/// at that moment (one per layer converted at once), sampled every 20 ms while `stop` is
/// false; and the most converters seen at once.
fn peak_together(parent: u32, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (u64, usize) {
    let (mut peak, mut most) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let (mut sum, mut n) = (kb_field(parent, "VmRSS:"), 0);
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let is_child = stat.contains("(tar2sqfs)")
                && stat
                    .rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().nth(1))
                    == Some(&parent.to_string());
            if is_child {
                sum += kb_field(pid, "VmRSS:");
                n += 1;
            }
        }
        peak = peak.max(sum);
        most = most.max(n);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    (peak, most)
}

/// aosd, cold: a fresh data dir, apply, wait for Ready. (seconds, peak RSS of aosd and its
/// converters together, disk)
fn run_aosd(registry: &Registry, reference: &str, follow: bool) -> (f64, u64, u64) {
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(format!(
            "[api]\ngroup = \"\"\n[images]\ninsecure_registries = [\"{}\"]\nconvert_while_downloading = {follow}\n",
            registry.host()
        )),
        ..Default::default()
    });
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (pid, stop) = (aosd.pid(), stop.clone());
        std::thread::spawn(move || peak_together(pid, stop))
    };
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (peak, converters) = sampler.join().unwrap();
    eprintln!(
        "aosd (following: {follow}): peak RSS with its converters {:.1} MB ({converters} converters at most at once; aosd's own VmHWM {:.1} MB)",
        peak as f64 / 1e6,
        kb_field(aosd.pid(), "VmHWM:") as f64 / 1e6
    );
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
    let host = std::env::var("BENCH_PULL_IMAGE").is_ok_and(|v| v == "host");
    let rounds = std::env::var("BENCH_PULL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS)
        .max(1);
    let build = if host { build_host } else { build };
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
        "image: {:.0} MB uncompressed, {files} files, {} layers, {:.0} MB compressed; {rounds} cold rounds, alternating; medians",
        bytes as f64 / 1e6,
        built.layers.len(),
        compressed as f64 / 1e6
    );
    let (mut a, mut p, mut c, mut u) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut a_rss, mut p_rss, mut a_disk, mut c_disk, mut u_disk) = (0, 0, 0, 0, 0);
    for round in 0..rounds {
        let (s, rss, d) = run_aosd(&registry, &reference, true);
        a.push(s);
        a_rss = a_rss.max(rss);
        a_disk = d;
        let (s, rss, _) = run_aosd(&registry, &reference, false);
        p.push(s);
        p_rss = p_rss.max(rss);
        let (s, d) = run_ctr(&reference);
        c.push(s);
        c_disk = d;
        let (s, d) = run_skopeo_umoci(&reference);
        u.push(s);
        u_disk = d;
        eprintln!(
            "round {round}: aosd {:.2} s, aosd converting after {:.2} s, ctr {:.2} s, skopeo+umoci {:.2} s",
            a[round], p[round], c[round], u[round]
        );
    }
    let (am, pm, cm, um) = (median(a), median(p), median(c), median(u));
    println!();
    println!(
        "{:<34} {:>12} {:>14} {:>12} {:>14}",
        "", "aosd", "aosd (after)", "ctr pull", "skopeo+umoci"
    );
    println!(
        "{:<34} {:>11.2}s {:>13.2}s {:>11.2}s {:>13.2}s",
        "cold pull to ready (median)", am, pm, cm, um
    );
    println!(
        "{:<34} {:>11.0}M {:>14} {:>11.0}M {:>13.0}M",
        "disk used",
        a_disk as f64 / 1e6,
        "-",
        c_disk as f64 / 1e6,
        u_disk as f64 / 1e6
    );
    println!(
        "{:<34} {:>11.1}M {:>13.1}M {:>12} {:>14}",
        "peak RSS, aosd + its tar2sqfs",
        a_rss as f64 / 1e6,
        p_rss as f64 / 1e6,
        "-",
        "-"
    );
    println!();
    println!(
        "aosd / containerd: time {:.3}x (converting after the download {:.3}x; target <= 0.2x), disk {:.3}x (target <= 0.5x); peak RSS with the converter {:.1} MB (target <= 64 MB)",
        am / cm,
        pm / cm,
        a_disk as f64 / c_disk as f64,
        a_rss as f64 / 1e6
    );
}
