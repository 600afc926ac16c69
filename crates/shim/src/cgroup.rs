//! A task's cgroup as the shim uses it: where it is (from the bundle's `linux.cgroupsPath`, on
//! either cgroup layout), how many OOM kills it counted, and signalling every process in it
//! (`kill --all`) without running the runtime binary. The cgroup filesystem itself is
//! `aos_cgroups`, shared with the Instance controller.

use std::path::Path;

use aos_cgroups::{relative_path, Cgroups};
use nix::sys::signal::Signal;

/// The cgroup of a task: a path under the host's cgroup filesystem.
#[derive(Clone, Debug)]
pub struct TaskCgroup {
    cgroups: Cgroups,
    path: String,
}

impl TaskCgroup {
    /// The cgroup of the bundle's spec; `None` without one or with a systemd-style path
    /// (`slice:prefix:name`), which names a unit, not a directory.
    pub fn of_bundle(bundle: &Path) -> Option<TaskCgroup> {
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).ok()?).ok()?;
        TaskCgroup::at(Cgroups::host(), spec["linux"]["cgroupsPath"].as_str()?)
    }

    /// The cgroup `path` (as a spec gives it) in `cgroups`.
    pub fn at(cgroups: Cgroups, path: &str) -> Option<TaskCgroup> {
        Some(TaskCgroup {
            path: relative_path(path)?.to_string(),
            cgroups,
        })
    }

    /// How many processes of the task the kernel's OOM killer ended.
    pub fn oom_kills(&self) -> u64 {
        self.cgroups.oom_kills(&self.path)
    }

    /// Sends `sig` to every process of the task, as `runc kill --all` (see
    /// [`Cgroups::signal_all`]; blocks while a freeze takes hold, at most 200 ms).
    pub fn signal_all(&self, sig: Signal) -> std::io::Result<()> {
        self.cgroups.signal_all(&self.path, sig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cgroup_of_a_bundle_comes_from_its_spec() {
        let dir = tempfile::tempdir().unwrap();
        assert!(TaskCgroup::of_bundle(dir.path()).is_none());
        let write = |path: &str| {
            let spec = format!(r#"{{"linux":{{"cgroupsPath":"{path}"}}}}"#);
            std::fs::write(dir.path().join("config.json"), spec).unwrap();
        };
        write("/aos/ns/svc");
        let g = TaskCgroup::of_bundle(dir.path()).unwrap();
        assert_eq!(g.path, "aos/ns/svc");
        assert_eq!(g.cgroups.root, Path::new(aos_cgroups::HOST_ROOT));
        write("system.slice:aos:svc");
        assert!(TaskCgroup::of_bundle(dir.path()).is_none());
    }

    #[test]
    fn oom_kills_are_those_of_the_task_s_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("memory/aos/ns/svc");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.oom_control"), "under_oom 0\noom_kill 2\n").unwrap();
        let g = TaskCgroup::at(Cgroups::detect(root.path()), "/aos/ns/svc").unwrap();
        assert_eq!(g.oom_kills(), 2);
    }
}
