//! A container of the shim: its bundle, the runtime that runs it, its first process and its
//! execs; creating it (rootfs mounts, stdio, `runc create`), starting processes, and what is
//! left to undo when it is deleted.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use containerd_shim::protos::api::Mount;
use tokio::task::JoinHandle;

use crate::cgroup::TaskCgroup;
use crate::process::Process;
use crate::runc::{self, Runc, RuncError};
use crate::stdio::{self, StdioError};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("mount rootfs: {0}")]
    Mount(String),
    #[error(transparent)]
    Stdio(#[from] StdioError),
    #[error(transparent)]
    Runc(#[from] RuncError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the runtime wrote no pid to {0}")]
    NoPid(PathBuf),
}

/// An exec: its process spec until it is started, and its process.
pub struct Exec {
    pub spec: Vec<u8>,
    pub stdout: String,
    pub stderr: String,
    pub process: Process,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runc: Runc,
    pub stdout: String,
    pub stderr: String,
    pub init: Process,
    pub execs: Mutex<HashMap<String, Arc<Exec>>>,
    /// The task's cgroup, when its spec names one by path.
    pub cgroup: Option<TaskCgroup>,
    mounted: bool,
    copiers: Mutex<Vec<JoinHandle<()>>>,
}

fn rootfs(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` on the bundle's rootfs, in order.
pub async fn mount(bundle: &Path, mounts: &[Mount]) -> Result<bool, ContainerError> {
    if mounts.is_empty() {
        return Ok(false);
    }
    let target = rootfs(bundle);
    std::fs::create_dir_all(&target)?;
    for m in mounts {
        if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
            unmount(bundle);
            return Err(ContainerError::Mount(e.to_string()));
        }
    }
    Ok(true)
}

/// Unmounts whatever is mounted on the bundle's rootfs (fine if nothing is).
pub fn unmount(bundle: &Path) {
    let target = rootfs(bundle);
    while nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
}

pub struct CreateArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a [Mount],
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub runc: Runc,
}

impl Container {
    /// Mounts, opens the streams and creates the container; its first process waits to start.
    pub async fn create(a: CreateArgs<'_>) -> Result<Container, ContainerError> {
        let mounted = mount(a.bundle, a.rootfs).await?;
        let undo = |e: ContainerError| {
            if mounted {
                unmount(a.bundle);
            }
            e
        };
        let opened = stdio::open(a.stdout, a.stderr).map_err(|e| undo(e.into()))?;
        let pid_file = a.bundle.join("init.pid");
        let bundle = a.bundle.to_string_lossy();
        let created = a
            .runc
            .run(
                a.bundle,
                &[
                    "create",
                    "--bundle",
                    &bundle,
                    "--pid-file",
                    &pid_file.to_string_lossy(),
                    a.id,
                ],
                Some(opened.io),
            )
            .await;
        if let Err(e) = created {
            for c in &opened.copiers {
                c.abort();
            }
            return Err(undo(e.into()));
        }
        let pid = runc::read_pid(&pid_file).ok_or_else(|| undo(ContainerError::NoPid(pid_file)))?;
        let init = Process::default();
        init.set_pid(pid);
        Ok(Container {
            id: a.id.to_string(),
            bundle: a.bundle.to_path_buf(),
            runc: a.runc,
            stdout: a.stdout.to_string(),
            stderr: a.stderr.to_string(),
            init,
            execs: Mutex::new(HashMap::new()),
            cgroup: TaskCgroup::of_bundle(a.bundle),
            mounted,
            copiers: Mutex::new(opened.copiers),
        })
    }

    pub fn exec(&self, id: &str) -> Option<Arc<Exec>> {
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Waits (up to a bound: a process the task left behind may hold a pipe) until the log
    /// has everything the task wrote.
    pub async fn drain(&self) {
        let copiers: Vec<_> =
            std::mem::take(&mut *self.copiers.lock().unwrap_or_else(|p| p.into_inner()));
        let all = async {
            for c in copiers {
                let _ = c.await;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), all).await;
    }

    /// Starts an exec's process (`runc exec --detach`); returns its pid.
    pub async fn start_exec(&self, exec_id: &str, exec: &Exec) -> Result<u32, ContainerError> {
        let spec = self.bundle.join(format!("exec-{exec_id}.json"));
        let pid_file = self.bundle.join(format!("exec-{exec_id}.pid"));
        std::fs::write(&spec, &exec.spec)?;
        let opened = stdio::open(&exec.stdout, &exec.stderr)?;
        let run = self
            .runc
            .run(
                &self.bundle,
                &[
                    "exec",
                    "--detach",
                    "--process",
                    &spec.to_string_lossy(),
                    "--pid-file",
                    &pid_file.to_string_lossy(),
                    &self.id,
                ],
                Some(opened.io),
            )
            .await;
        let _ = std::fs::remove_file(&spec);
        run?;
        let pid = runc::read_pid(&pid_file).ok_or(ContainerError::NoPid(pid_file.clone()))?;
        let _ = std::fs::remove_file(&pid_file);
        exec.process.set_pid(pid);
        exec.process.set_started();
        Ok(pid)
    }

    /// Sends signal `sig` to the first process, or with `all` to every process of the task's
    /// cgroup, without the runtime binary. Fails where the runtime must do it (no cgroup
    /// path in the spec, a cgroup not found, an unknown signal).
    pub fn signal(&self, sig: u32, all: bool) -> std::io::Result<()> {
        let sig = nix::sys::signal::Signal::try_from(sig as i32)?;
        if all {
            let Some(g) = &self.cgroup else {
                return Err(std::io::Error::other("no cgroup path in the spec"));
            };
            return g.signal_all(sig);
        }
        signal_pid(self.init.pid(), sig)
    }

    /// Deletes the container from the runtime and unmounts its rootfs.
    pub async fn destroy(&self, force: bool) -> Result<(), ContainerError> {
        let args: &[&str] = if force {
            &["delete", "--force", &self.id]
        } else {
            &["delete", &self.id]
        };
        self.runc.run(&self.bundle, args, None).await?;
        if self.mounted {
            unmount(&self.bundle);
        }
        Ok(())
    }
}

/// Sends `sig` to process `pid` (0: not started yet, an error).
pub fn signal_pid(pid: u32, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
    match pid {
        0 => Err(std::io::Error::other("no pid yet")),
        pid => Ok(nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            sig,
        )?),
    }
}
