//! Signalling every process of a cgroup without a runtime binary, as `runc kill --all` does:
//! one runc process less per signal, which a stop of many tasks pays twice per task (SIGTERM,
//! then SIGKILL).

use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Cgroups, Layout};

/// How long a freeze may take before the processes are signalled all the same.
const FREEZE_WAIT: Duration = Duration::from_millis(200);

impl Cgroups {
    /// The pids of the cgroup `path` and of its child cgroups (on v1, as the freezer
    /// hierarchy lists them).
    pub fn pids(&self, path: &str) -> Vec<i32> {
        let mut out = Vec::new();
        procs(&self.dir("freezer", path), &mut out);
        out
    }

    /// Sends `sig` to every process of the cgroup `path` and its children: SIGKILL through
    /// `cgroup.kill` where the kernel has it (v2, Linux 5.14+), else with the cgroup frozen
    /// while its processes are listed and signalled (so that none forks past the list),
    /// thawed after. Fails when the cgroup does not exist (on v1: in the freezer hierarchy).
    /// Blocks the calling thread while a freeze takes hold (at most 200 ms; a cgroup of a few
    /// processes freezes at once).
    pub fn signal_all(&self, path: &str, sig: Signal) -> std::io::Result<()> {
        let dir = self.dir("freezer", path);
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no cgroup {}", dir.display()),
            ));
        }
        let v2 = self.layout == Layout::V2;
        if v2 && sig == Signal::SIGKILL && dir.join("cgroup.kill").exists() {
            return std::fs::write(dir.join("cgroup.kill"), "1");
        }
        let (file, frozen, thawed) = if v2 {
            (dir.join("cgroup.freeze"), "1", "0")
        } else {
            (dir.join("freezer.state"), "FROZEN", "THAWED")
        };
        if std::fs::write(&file, frozen).is_ok() {
            wait_frozen(&dir, v2);
        }
        let mut pids = Vec::new();
        procs(&dir, &mut pids);
        for pid in pids {
            // A process may have ended since the list was read.
            let _ = kill(Pid::from_raw(pid), sig);
        }
        std::fs::write(&file, thawed)
    }

    /// Whether the cgroup `path` is frozen (`None`: it has no freezer).
    pub fn frozen(&self, path: &str) -> Option<bool> {
        let dir = self.dir("freezer", path);
        match self.layout {
            Layout::V2 => std::fs::read_to_string(dir.join("cgroup.freeze"))
                .ok()
                .map(|t| t.trim() == "1"),
            Layout::V1 => std::fs::read_to_string(dir.join("freezer.state"))
                .ok()
                .map(|t| t.trim() != "THAWED"),
        }
    }
}

/// Waits (bounded) until the freeze took hold of every process.
fn wait_frozen(dir: &Path, v2: bool) {
    let end = Instant::now() + FREEZE_WAIT;
    while Instant::now() < end {
        let frozen = if v2 {
            std::fs::read_to_string(dir.join("cgroup.events"))
                .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"))
        } else {
            std::fs::read_to_string(dir.join("freezer.state")).is_ok_and(|t| t.trim() == "FROZEN")
        };
        if frozen {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The pids of `dir`'s `cgroup.procs` and of its child cgroups'.
fn procs(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if child.file_type().is_ok_and(|t| t.is_dir()) {
            procs(&child.path(), out);
        }
    }
}
