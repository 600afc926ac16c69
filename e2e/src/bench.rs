//! Pieces the start and footprint benchmarks share: the `sleeper` item (a rootfs whose command
//! sleeps), Instances of it, applying and waiting on a watch until they are active, and what
//! /proc says about a process (PSS, parent, command line).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::Aosd;

/// Packs the `sleeper` item under `dir` and returns its Item document (plus `extra`, further
/// documents, after it).
pub fn sleeper_item(aosd: &Aosd, dir: &Path, extra: &str) -> String {
    let svc = dir.join("sleeper");
    std::fs::create_dir_all(svc.join("meta")).unwrap();
    std::fs::create_dir_all(svc.join("src/etc")).unwrap();
    std::fs::write(svc.join("src/etc/sleeper"), "bench\n").unwrap();
    std::fs::write(
        svc.join("meta/config.yaml"),
        "configuration:\n  cmd: [\"/bin/sleep\", \"1000000\"]\n",
    )
    .unwrap();
    let archive = dir.join("sleeper.tar");
    aosd.ok(&[
        "pack",
        svc.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
    ]);
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: sleeper\nspec:\n  itemId: sleeper\n  version: v1\n  source:\n    archive: {}\n{extra}",
        archive.display()
    )
}

/// An Instance of the sleeper, on the network `bench` if `network`.
pub fn sleeper_instance(name: &str, index: usize, network: bool) -> String {
    let net = if network {
        "  network:\n    networkId: bench\n"
    } else {
        ""
    };
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: {name}\nspec:\n  itemId: sleeper\n  version: v1\n  subjectId: bench\n  index: {index}\n  runtime: container\n{net}---\n"
    )
}

/// Runs `aosctl ARGS` and waits, on a watch opened before, until `n` Instances are active;
/// returns the time from the start of aosctl.
pub fn apply_until_active(aosd: &Aosd, args: &[&str], n: usize) -> Duration {
    aosd.with_client(|client| async move {
        let is_active =
            |v: &serde_json::Value| v["status"]["state"] == "active" && v["status"]["pid"].is_u64();
        // Those active already count; the watch starts where the list ends.
        let (listed, rev) = client.list("Instance", "").await.unwrap();
        let mut active: std::collections::HashSet<String> = listed
            .iter()
            .filter(|i| is_active(&serde_json::to_value(i).unwrap()))
            .map(|i| i.metadata.name.clone())
            .collect();
        let mut events = Box::pin(client.watch("Instance", "", "", rev).await.unwrap());
        let start = Instant::now();
        let out = aosd.aosctl().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        while active.len() < n {
            let ev = tokio::time::timeout(Duration::from_secs(300), events.next())
                .await
                .expect("instances converge")
                .unwrap()
                .unwrap();
            let name = ev.object.metadata.name.clone();
            if is_active(&serde_json::to_value(&ev.object).unwrap()) {
                active.insert(name);
            } else {
                active.remove(&name);
            }
        }
        start.elapsed()
    })
}

/// The middle value.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Proportional set size of a process (shared pages divided among their users), in bytes.
pub fn pss_bytes(pid: u32) -> Option<u64> {
    crate::proc_kb(pid, "smaps_rollup", "Pss:")
}

/// Every process: (pid, parent pid, command line).
pub fn processes() -> Vec<(u32, u32, Vec<String>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let (Ok(stat), Ok(cmdline)) = (
            std::fs::read_to_string(entry.path().join("stat")),
            std::fs::read(entry.path().join("cmdline")),
        ) else {
            continue;
        };
        let Some(ppid) = stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].split(' ').nth(1))
            .and_then(|p| p.parse().ok())
        else {
            continue;
        };
        let args = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push((pid, ppid, args));
    }
    out
}
