//! The host's cgroup filesystem: which layout it has (v1 controllers or the v2 unified tree,
//! detected, never assumed), where a cgroup and its limits live, the CPU time, memory and OOM
//! kills it counted, removing it once empty, and signalling every process in it
//! ([`Cgroups::signal_all`], in `signal.rs`). Used by the Instance controller, aosd's shim
//! and the test kit; std and nix only, so the shim stays small.

mod signal;

use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Which cgroup hierarchy the host mounts.
pub enum Layout {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>/...`).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Where hosts mount the cgroup filesystem.
pub const HOST_ROOT: &str = "/sys/fs/cgroup";

/// A cgroup path as a runtime spec gives it (`linux.cgroupsPath`), made relative; `None` for
/// the root or a systemd-style `slice:prefix:name`, which names a unit, not a directory.
pub fn relative_path(path: &str) -> Option<&str> {
    let rel = path.trim_start_matches('/');
    (!rel.is_empty() && !rel.contains(':')).then_some(rel)
}

/// The cgroup filesystem of the host.
#[derive(Clone, Debug)]
pub struct Cgroups {
    /// Where the cgroup filesystem is mounted.
    pub root: PathBuf,
    /// Its layout, as detected.
    pub layout: Layout,
}

impl Cgroups {
    /// The host's cgroup filesystem at `/sys/fs/cgroup`, its layout detected.
    pub fn host() -> Cgroups {
        Cgroups::detect(Path::new(HOST_ROOT))
    }

    /// Detects the layout under `root` (normally `/sys/fs/cgroup`): the unified tree has
    /// `cgroup.controllers` at its top.
    pub fn detect(root: &Path) -> Cgroups {
        let layout = if root.join("cgroup.controllers").exists() {
            Layout::V2
        } else {
            Layout::V1
        };
        Cgroups {
            root: root.to_path_buf(),
            layout,
        }
    }

    /// The directory of the cgroup `path` in `controller`'s hierarchy (the one tree on v2).
    pub fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        match self.layout {
            Layout::V1 => self.root.join(controller).join(rel),
            Layout::V2 => self.root.join(rel),
        }
    }

    fn file(&self, v1_controller: &str, path: &str, v1: &str, v2: &str) -> PathBuf {
        let dir = self.dir(v1_controller, path);
        match self.layout {
            Layout::V1 => dir.join(v1),
            Layout::V2 => dir.join(v2),
        }
    }

    /// Every hierarchy's directory of the cgroup `path` (one on v2, one per mounted controller
    /// on v1), existing or not.
    fn dirs(&self, path: &str) -> Vec<PathBuf> {
        let rel = path.trim_start_matches('/');
        match self.layout {
            Layout::V2 => vec![self.root.join(rel)],
            Layout::V1 => std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|h| h.path().join(rel))
                .collect(),
        }
    }

    /// Removes the directory of the cgroup `path` in every hierarchy where it is empty (a
    /// parent whose last child went); one still in use stays.
    pub fn remove_if_empty(&self, path: &str) {
        if path.trim_start_matches('/').is_empty() {
            return;
        }
        for dir in self.dirs(path) {
            let _ = std::fs::remove_dir(dir);
        }
    }

    /// Removes the cgroup `path` and its child cgroups, deepest first, in every hierarchy,
    /// where they hold no process (a cgroup left by a runtime killed mid-create); one in use
    /// stays, with its parents.
    pub fn remove_tree_if_empty(&self, path: &str) {
        fn remove(dir: &Path) {
            for child in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    remove(&child.path());
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
        if path.trim_start_matches('/').is_empty() {
            return;
        }
        for dir in self.dirs(path) {
            remove(&dir);
        }
    }

    /// The file holding the memory limit of the cgroup at `path`.
    pub fn memory_limit_file(&self, path: &str) -> PathBuf {
        self.file("memory", path, "memory.limit_in_bytes", "memory.max")
    }

    /// The file of the pids limit of the cgroup `path`.
    pub fn pids_limit_file(&self, path: &str) -> PathBuf {
        self.file("pids", path, "pids.max", "pids.max")
    }

    /// The CPU quota and period of the cgroup `path` (`None`: unlimited or unreadable).
    pub fn cpu_quota(&self, path: &str) -> Option<(i64, u64)> {
        match self.layout {
            Layout::V1 => {
                let q = read(&self.file("cpu", path, "cpu.cfs_quota_us", ""))?;
                let p = read(&self.file("cpu", path, "cpu.cfs_period_us", ""))?;
                Some((q.trim().parse().ok()?, p.trim().parse().ok()?))
            }
            Layout::V2 => {
                let text = read(&self.file("", path, "", "cpu.max"))?;
                let mut it = text.split_whitespace();
                let q = it.next()?;
                let p = it.next()?.parse().ok()?;
                Some((if q == "max" { -1 } else { q.parse().ok()? }, p))
            }
        }
    }

    /// Total CPU time used, in nanoseconds.
    pub fn cpu_time_ns(&self, path: &str) -> Option<u64> {
        match self.layout {
            Layout::V1 => read(&self.file("cpuacct", path, "cpuacct.usage", ""))?
                .trim()
                .parse()
                .ok(),
            Layout::V2 => {
                let text = read(&self.file("", path, "", "cpu.stat"))?;
                let usec: u64 = text
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Some(usec * 1000)
            }
        }
    }

    /// How many processes of the cgroup the OOM killer killed (0 when the kernel does not say).
    pub fn oom_kills(&self, path: &str) -> u64 {
        let file = match self.layout {
            Layout::V1 => self.file("memory", path, "memory.oom_control", ""),
            Layout::V2 => self.file("", path, "", "memory.events"),
        };
        read(&file)
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Memory in use, page cache excluded where the kernel says how much it is.
    pub fn memory_bytes(&self, path: &str) -> Option<u64> {
        let (usage, stat, cache_key) = match self.layout {
            Layout::V1 => (
                self.file("memory", path, "memory.usage_in_bytes", ""),
                self.file("memory", path, "memory.stat", ""),
                "total_inactive_file ",
            ),
            Layout::V2 => (
                self.file("", path, "", "memory.current"),
                self.file("", path, "", "memory.stat"),
                "inactive_file ",
            ),
        };
        let used: u64 = read(&usage)?.trim().parse().ok()?;
        let cache: u64 = read(&stat)
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(cache_key))
                    .and_then(|v| v.trim().parse().ok())
            })
            .unwrap_or(0);
        Some(used.saturating_sub(cache))
    }
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

#[cfg(test)]
mod tests;
