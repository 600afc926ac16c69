//! Reading an instance's cgroup: which layout the host has (v1 controllers or the v2 unified
//! tree, detected, never assumed), where a limit lives, and the CPU time and memory in use.

use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// Which cgroup hierarchy the host mounts.
pub enum Layout {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>/...`).
    V1,
    /// The unified hierarchy.
    V2,
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

    fn file(&self, v1_controller: &str, path: &str, v1: &str, v2: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        match self.layout {
            Layout::V1 => self.root.join(v1_controller).join(rel).join(v1),
            Layout::V2 => self.root.join(rel).join(v2),
        }
    }

    /// Removes the directory of the cgroup `path` in every hierarchy where it is empty (a
    /// parent whose last child went); one still in use stays.
    pub fn remove_if_empty(&self, path: &str) {
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return;
        }
        match self.layout {
            Layout::V2 => {
                let _ = std::fs::remove_dir(self.root.join(rel));
            }
            Layout::V1 => {
                for h in std::fs::read_dir(&self.root)
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let _ = std::fs::remove_dir(h.path().join(rel));
                }
            }
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
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_v1_host_is_read_per_controller() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("memory")).unwrap();
        put(t.path(), "cpuacct/aos/x/cpuacct.usage", "123456\n");
        put(t.path(), "memory/aos/x/memory.usage_in_bytes", "10000\n");
        put(
            t.path(),
            "memory/aos/x/memory.stat",
            "cache 5\ntotal_inactive_file 4000\n",
        );
        put(t.path(), "cpu/aos/x/cpu.cfs_quota_us", "50000\n");
        put(t.path(), "cpu/aos/x/cpu.cfs_period_us", "100000\n");
        put(
            t.path(),
            "memory/aos/x/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        );
        let c = Cgroups::detect(t.path());
        assert_eq!(c.layout, Layout::V1);
        assert_eq!(c.cpu_time_ns("/aos/x"), Some(123456));
        assert_eq!(c.memory_bytes("/aos/x"), Some(6000));
        assert_eq!(c.cpu_quota("/aos/x"), Some((50000, 100000)));
        assert_eq!(c.oom_kills("/aos/x"), 2);
        assert_eq!(c.oom_kills("/aos/none"), 0);
        assert_eq!(
            c.memory_limit_file("/aos/x"),
            t.path().join("memory/aos/x/memory.limit_in_bytes")
        );
    }

    #[test]
    fn a_v2_host_is_read_from_the_unified_tree() {
        let t = tempfile::tempdir().unwrap();
        put(t.path(), "cgroup.controllers", "cpu memory pids\n");
        put(t.path(), "aos/x/cpu.stat", "usage_usec 42\nuser_usec 40\n");
        put(t.path(), "aos/x/memory.current", "8192\n");
        put(
            t.path(),
            "aos/x/memory.stat",
            "anon 4096\ninactive_file 1000\n",
        );
        put(t.path(), "aos/x/cpu.max", "max 100000\n");
        put(
            t.path(),
            "aos/x/memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        let c = Cgroups::detect(t.path());
        assert_eq!(c.layout, Layout::V2);
        assert_eq!(c.cpu_time_ns("/aos/x"), Some(42_000));
        assert_eq!(c.memory_bytes("/aos/x"), Some(7192));
        assert_eq!(c.cpu_quota("/aos/x"), Some((-1, 100000)));
        assert_eq!(c.oom_kills("/aos/x"), 1);
        assert_eq!(c.pids_limit_file("/aos/x"), t.path().join("aos/x/pids.max"));
    }
}
