//! A private containerd (own root, state and socket; the configuration aosd ships in
//! `deploy/containerd.toml`, so that every test proves aosd needs nothing it turns off), started
//! for a test run and stopped, with its state removed, when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The containerd configuration aosd ships.
pub const DEPLOY_CONFIG: &str = include_str!("../../../deploy/containerd.toml");

pub struct ContainerdProcess {
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    child: Child,
    env: Vec<(String, String)>,
}

impl ContainerdProcess {
    pub fn start() -> ContainerdProcess {
        Self::start_with(DEPLOY_CONFIG, &[])
    }

    /// containerd with this configuration and these environment variables (which its shims
    /// inherit).
    pub fn start_with(config_toml: &str, env: &[(&str, &str)]) -> ContainerdProcess {
        assert!(
            crate::have("containerd"),
            "containerd is missing: run hack/setup.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("aos-containerd-")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = Self::spawn(dir.path(), &socket, &env);
        ContainerdProcess {
            socket,
            dir,
            child,
            env,
        }
    }

    /// containerd's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(dir: &std::path::Path, socket: &std::path::Path, env: &[(String, String)]) -> Child {
        let child = Command::new("containerd")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--state")
            .arg(dir.join("state"))
            .arg("--address")
            .arg(socket)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd starts");
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "containerd did not listen in 20 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Kills containerd itself (as a crash would): its shims and tasks keep running.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts containerd again on the same root and state (after [`ContainerdProcess::kill`]).
    pub fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), &self.socket, &self.env);
    }
}

impl Drop for ContainerdProcess {
    /// Stops containerd and whatever a failed test left: shims, runc state, rootfs mounts.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let me = self.dir.path().to_string_lossy().into_owned();
        // Again until a pass finds nothing: a shim's `start` that containerd ran just before
        // it died may spawn the shim after a pass has read /proc.
        for _ in 0..10 {
            let mut found = false;
            for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmd).contains(&me) {
                    if let Ok(pid) = p.file_name().to_string_lossy().parse::<i32>() {
                        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
                        found = true;
                    }
                }
            }
            if !found {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let tasks = self.dir.path().join("state/io.containerd.runtime.v2.task");
        for ns in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
            let root = format!("/run/containerd/runc/{}", ns.file_name().to_string_lossy());
            for id in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                let _ = Command::new("runc")
                    .args(["--root", &root, "delete", "-f"])
                    .arg(id.file_name())
                    .stderr(Stdio::null())
                    .status();
            }
            let _ = std::fs::remove_dir(&root);
            // The namespace's cgroup parent (aosd's default) and what is left in it (a task
            // whose runc was killed mid-create has a cgroup and no state), empty once the
            // tasks are gone.
            aos_cgroups::Cgroups::host().remove_tree_if_empty(&ns.file_name().to_string_lossy());
        }

        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&me))
        {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
    }
}
