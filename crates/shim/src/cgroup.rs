//! A task's cgroup as the shim uses it: where it is (from the bundle's `linux.cgroupsPath`, on
//! either cgroup layout), how many OOM kills it counted, and signalling every process in it
//! (`kill --all`) without running the runtime binary: one runc process less per signal, which
//! a stop of many tasks pays twice per task (SIGTERM, then SIGKILL).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a freeze may take before the processes are signalled all the same.
const FREEZE_WAIT: Duration = Duration::from_millis(200);

/// The cgroup of a task: a path under the cgroup root, on the layout the host has.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskCgroup {
    root: PathBuf,
    path: PathBuf,
    v2: bool,
}

impl TaskCgroup {
    /// The cgroup of the bundle's spec; `None` without one or with a systemd-style path
    /// (`slice:prefix:name`), which names a unit, not a directory.
    pub fn of_bundle(bundle: &Path) -> Option<TaskCgroup> {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
        TaskCgroup::at(
            Path::new("/sys/fs/cgroup"),
            spec["linux"]["cgroupsPath"].as_str()?,
        )
    }

    /// The cgroup `path` under the hierarchy mounted at `root` (cgroup v2 when `root` has
    /// `cgroup.controllers`, else one directory per v1 controller).
    pub fn at(root: &Path, path: &str) -> Option<TaskCgroup> {
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.contains(':') {
            return None;
        }
        Some(TaskCgroup {
            root: root.to_path_buf(),
            path: PathBuf::from(path),
            v2: root.join("cgroup.controllers").exists(),
        })
    }

    /// The directory of the cgroup in `controller`'s hierarchy (the one tree on v2).
    fn dir(&self, controller: &str) -> PathBuf {
        if self.v2 {
            self.root.join(&self.path)
        } else {
            self.root.join(controller).join(&self.path)
        }
    }

    /// The memory controller's file that counts OOM kills.
    pub fn oom_file(&self) -> PathBuf {
        if self.v2 {
            self.dir("memory").join("memory.events")
        } else {
            self.dir("memory").join("memory.oom_control")
        }
    }

    /// Sends `sig` to every process of the cgroup and its children, as `runc kill --all`:
    /// SIGKILL through `cgroup.kill` where the kernel has it (v2, Linux 5.14+), else with the
    /// cgroup frozen while its processes are listed and signalled (so that none forks past
    /// the list), thawed after. Fails when the cgroup does not exist. Blocks the calling
    /// thread while a freeze takes hold (at most [`FREEZE_WAIT`]; a cgroup of a few processes
    /// freezes at once).
    pub fn signal_all(&self, sig: Signal) -> std::io::Result<()> {
        let dir = self.dir("freezer");
        if !dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no cgroup {}", dir.display()),
            ));
        }
        if self.v2 && sig == Signal::SIGKILL && dir.join("cgroup.kill").exists() {
            return std::fs::write(dir.join("cgroup.kill"), "1");
        }
        let (file, frozen, thawed) = if self.v2 {
            (dir.join("cgroup.freeze"), "1", "0")
        } else {
            (dir.join("freezer.state"), "FROZEN", "THAWED")
        };
        if std::fs::write(&file, frozen).is_ok() {
            self.wait_frozen(&dir);
        }
        let mut pids = Vec::new();
        procs(&dir, &mut pids);
        for pid in pids {
            // A process may have ended since the list was read.
            let _ = kill(Pid::from_raw(pid), sig);
        }
        std::fs::write(&file, thawed)
    }

    /// Waits (bounded) until the freeze took hold of every process.
    fn wait_frozen(&self, dir: &Path) {
        let end = Instant::now() + FREEZE_WAIT;
        while Instant::now() < end {
            let frozen = if self.v2 {
                std::fs::read_to_string(dir.join("cgroup.events"))
                    .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"))
            } else {
                std::fs::read_to_string(dir.join("freezer.state"))
                    .is_ok_and(|t| t.trim() == "FROZEN")
            };
            if frozen {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
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

/// How many processes the kernel's OOM killer ended in the cgroup (`oom_kill N`).
pub fn oom_kills(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
