//! The footprint benchmark of `hack/bench/footprint.sh` (issue 14): what a node pays for aosd
//! with 0, 20 and 100 running instances, as PSS (/proc/PID/smaps_rollup) of aosd, containerd,
//! the shims and the logging processes, and aosd's idle CPU, one setup after the other in one
//! run: `previous` (containerd's Go shim, one per task, with an aos-logger each, containerd
//! with only CRI off, usage written at every reading), `go-groups` (the Go shim in groups of
//! 16 with an aos-logger per task, `deploy/containerd.toml`, usage written when it moved) and
//! `now` (aosd's own shim in groups, writing the logs itself). `BENCH_SETUPS` picks some.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::time::Duration;

use aos_e2e::bench::{apply_until_active, processes, pss_bytes, sleeper_instance, sleeper_item};
use aos_e2e::{Aosd, AosdOptions};
use aos_testkit::containerd::{ContainerdProcess, DEPLOY_CONFIG};

/// How a node is set up.
#[derive(Clone)]
struct Setup {
    name: &'static str,
    containerd_config: String,
    containerd_env: Vec<(String, String)>,
    aosd_config: String,
    /// Where aosd comes from when not the bench's own build (another cargo profile).
    bin_dir: Option<std::path::PathBuf>,
    /// aosd's environment beyond the bench's own.
    aosd_env: Vec<(String, String)>,
}

/// One row of the table.
struct Row {
    running: usize,
    aosd: f64,
    containerd: f64,
    shims: (usize, f64),
    loggers: (usize, f64),
    cpu: f64,
}

impl Row {
    /// The row as the table prints it.
    fn line(&self, setup: &str) -> String {
        let total = self.aosd + self.containerd + self.shims.1 + self.loggers.1;
        format!(
            "{:<9} {:>7} {:>7.1} {:>10.1} {:>8.1} ({:>3}) {:>8.1} ({:>3}) {:>10.1} {:>8.2}%",
            setup,
            self.running,
            self.aosd,
            self.containerd,
            self.shims.1,
            self.shims.0,
            self.loggers.1,
            self.loggers.0,
            total,
            self.cpu
        )
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// PSS of the shims (containerd's Go runc shim or aosd's) serving `socket` and of their
/// logging children: (count, MiB) each.
fn shims_and_loggers(socket: &std::path::Path) -> ((usize, f64), (usize, f64)) {
    let all = processes();
    let socket = socket.to_string_lossy();
    let shims: Vec<u32> = all
        .iter()
        .filter(|(_, _, args)| {
            args.first().is_some_and(|a| a.contains("containerd-shim-"))
                && args
                    .windows(2)
                    .any(|w| w[0] == "-address" && w[1] == *socket)
        })
        .map(|(pid, _, _)| *pid)
        .collect();
    let loggers: Vec<u32> = all
        .iter()
        .filter(|(_, ppid, args)| {
            shims.contains(ppid) && args.first().is_some_and(|a| a.ends_with("aos-logger"))
        })
        .map(|(pid, _, _)| *pid)
        .collect();
    let sum = |pids: &[u32]| mib(pids.iter().filter_map(|p| pss_bytes(*p)).sum());
    ((shims.len(), sum(&shims)), (loggers.len(), sum(&loggers)))
}

fn measure(setup: &Setup, counts: &[usize], idle: u64) -> Vec<Row> {
    let env: Vec<(&str, &str)> = setup
        .containerd_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let containerd = ContainerdProcess::start_with(&setup.containerd_config, &env);
    let aosd = Aosd::start_with(AosdOptions {
        containerd: Some(containerd.socket.clone()),
        config: Some(format!(
            "[runtimes.container]\nstop_grace = \"1s\"\n{}",
            setup.aosd_config
        )),
        bin_dir: setup.bin_dir.clone(),
        env: setup.aosd_env.clone(),
        ..Default::default()
    });
    aosd.wait_node_ready();
    let tmp = tempfile::tempdir().unwrap();
    let item = tmp.path().join("item.yaml");
    std::fs::write(&item, sleeper_item(&aosd, tmp.path(), "")).unwrap();
    aosd.ok(&["apply", "-f", item.to_str().unwrap(), "--wait"]);
    let mut rows = Vec::new();
    for &n in counts {
        let f = tmp.path().join("instances.yaml");
        let docs: String = (0..n)
            .map(|i| sleeper_instance(&format!("fp-{i}"), i, false))
            .collect();
        std::fs::write(&f, docs).unwrap();
        if n > 0 {
            apply_until_active(&aosd, &["apply", "-f", f.to_str().unwrap()], n);
        }
        // Let start-up settle: Go's GC, and the readings a new task's start makes move (its
        // start-up CPU, then none), which are written: two usage intervals of 30 s.
        std::thread::sleep(Duration::from_secs(75));
        let before = aos_e2e::cpu_ticks(aosd.pid()).unwrap();
        std::thread::sleep(Duration::from_secs(idle));
        let ticks = aos_e2e::cpu_ticks(aosd.pid()).unwrap() - before;
        let (shims, loggers) = shims_and_loggers(&containerd.socket);
        let row = Row {
            running: n,
            aosd: mib(pss_bytes(aosd.pid()).unwrap()),
            containerd: mib(pss_bytes(containerd.pid()).unwrap()),
            shims,
            loggers,
            // USER_HZ is 100.
            cpu: ticks as f64 / idle as f64,
        };
        // As it is measured too: a later setup that fails loses nothing.
        eprintln!("measured: {}", row.line(setup.name));
        rows.push(row);
    }
    let names: Vec<String> = (0..counts.iter().copied().max().unwrap_or(0))
        .map(|i| format!("fp-{i}"))
        .collect();
    if !names.is_empty() {
        let mut args = vec!["delete", "instance"];
        args.extend(names.iter().map(String::as_str));
        args.extend(["--wait", "--timeout=300s"]);
        aosd.ok(&args);
    }
    rows
}

fn main() {
    let idle: u64 = env_or("BENCH_IDLE_SECS", "60").parse().unwrap();
    let counts: Vec<usize> = env_or("BENCH_COUNTS", "0,20,100")
        .split(',')
        .map(|c| c.trim().parse().unwrap())
        .collect();
    let go_env: Vec<(String, String)> = env_or("BENCH_GO_ENV", "")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let now = Setup {
        name: "now",
        containerd_config: DEPLOY_CONFIG.into(),
        containerd_env: go_env,
        aosd_config: env_or("BENCH_NOW_CONFIG", ""),
        bin_dir: None,
        aosd_env: Vec::new(),
    };
    // The same setup as a device runs it (hack/bench/footprint.sh's BENCH_DEVICE=1): aosd of
    // the `device` profile, aos-logger linked statically, and aosd's malloc arenas capped as
    // deploy/aosd.service does.
    let device = std::env::var_os("BENCH_DEVICE_BIN_DIR").map(|d| Setup {
        name: "device",
        bin_dir: Some(d.into()),
        aosd_env: vec![("MALLOC_ARENA_MAX".into(), "2".into())],
        ..now.clone()
    });
    const GO_SHIM: &str = "shim = \"io.containerd.runc.v2\"\n";
    let mut setups = vec![
        Setup {
            name: "previous",
            containerd_config: "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n"
                .into(),
            containerd_env: Vec::new(),
            // A Go shim per task, and every instance's usage written at every reading (as
            // before readings went to status only when they moved).
            aosd_config: format!("{GO_SHIM}shim_group = 1\nusage_refresh = \"30s\"\n"),
            bin_dir: None,
            aosd_env: Vec::new(),
        },
        Setup {
            name: "go-groups",
            aosd_config: format!("{GO_SHIM}{}", now.aosd_config),
            ..now.clone()
        },
        now,
    ];
    setups.extend(device);
    let wanted = env_or("BENCH_SETUPS", "");
    if !wanted.is_empty() {
        setups.retain(|s| wanted.split(',').any(|w| w.trim() == s.name));
    }
    let results: Vec<(&str, Vec<Row>)> = setups
        .iter()
        .map(|s| (s.name, measure(s, &counts, idle)))
        .collect();
    println!("PSS in MiB; aosd CPU in % of a core over {idle} s idle");
    println!(
        "{:<9} {:>7} {:>7} {:>10} {:>13} {:>13} {:>10} {:>9}",
        "setup",
        "running",
        "aosd",
        "containerd",
        "shims (n)",
        "loggers (n)",
        "node total",
        "aosd CPU"
    );
    for (name, rows) in &results {
        for r in rows {
            println!("{}", r.line(name));
        }
    }
}
