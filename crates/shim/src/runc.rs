//! The OCI runtime binary (runc, crun) as the shim runs it: one command at a time per call,
//! its exit taken from the reaper ([`crate::exits`]), its error message from the JSON log it
//! writes (the container's stdio may be the command's own, so its stderr is not ours to read).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::exits::Exits;

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("failed to run {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{binary} {args}: {message}")]
    Failed {
        binary: String,
        args: String,
        message: String,
    },
}

/// Where the runtime binary is and which state root it keeps its containers in.
#[derive(Clone)]
pub struct Runc {
    pub binary: String,
    /// The runtime's `--root`: the configured root and the namespace.
    pub root: PathBuf,
    exits: Arc<Exits>,
}

/// The standard streams a command's process (and a container it starts) gets.
pub struct Io {
    pub stdout: File,
    pub stderr: File,
}

static CALLS: AtomicU64 = AtomicU64::new(0);

impl Runc {
    pub fn new(binary: &str, root: &str, namespace: &str, exits: Arc<Exits>) -> Runc {
        let binary = if binary.is_empty() { "runc" } else { binary };
        let root = if root.is_empty() {
            "/run/containerd/runc"
        } else {
            root
        };
        Runc {
            binary: binary.to_string(),
            root: Path::new(root).join(namespace),
            exits,
        }
    }

    /// Runs `<binary> --root … <args>` (`args[0]` the command, and the container's id among
    /// the rest) with its log in `dir`; fine when it exits 0.
    pub async fn run(&self, dir: &Path, args: &[&str], io: Option<Io>) -> Result<(), RuncError> {
        let log = dir.join(format!(
            "runc-{}-{}.log",
            std::process::id(),
            CALLS.fetch_add(1, Ordering::Relaxed)
        ));
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&log)
            .arg("--log-format")
            .arg("json")
            .args(args)
            .stdin(Stdio::null());
        match io {
            Some(io) => cmd.stdout(io.stdout).stderr(io.stderr),
            None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        let child = cmd.spawn().map_err(|source| RuncError::Spawn {
            binary: self.binary.clone(),
            source,
        })?;
        // The ends of the container's pipes the command holds close with it here.
        drop(cmd);
        let code = self.exits.expect(child.id()).await.unwrap_or(-1);
        let message = last_error(&log);
        let _ = std::fs::remove_file(&log);
        if code == 0 {
            return Ok(());
        }
        Err(RuncError::Failed {
            binary: self.binary.clone(),
            args: args.join(" "),
            message: message.unwrap_or_else(|| format!("exit status {code}")),
        })
    }
}

/// The message of the last error the runtime logged (JSON lines: `{"level":"error","msg":…}`).
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error")
        .find_map(|v| v["msg"].as_str().map(str::to_string))
}

/// A pid the runtime wrote to `path`.
pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_error_of_the_runtime_log_is_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(
            &log,
            "{\"level\":\"warning\",\"msg\":\"w\"}\nnot json\n{\"level\":\"error\",\"msg\":\"first\"}\n{\"level\":\"error\",\"msg\":\"no such file\"}\n",
        )
        .unwrap();
        assert_eq!(last_error(&log).as_deref(), Some("no such file"));
        assert_eq!(last_error(&dir.path().join("none")), None);
    }

    #[test]
    fn the_state_root_is_per_namespace_with_runc_s_default() {
        let exits = Arc::new(Exits::default());
        let r = Runc::new("", "", "ns1", exits.clone());
        assert_eq!(r.binary, "runc");
        assert_eq!(r.root, Path::new("/run/containerd/runc/ns1"));
        let r = Runc::new("/usr/bin/crun", "/run/x", "ns2", exits);
        assert_eq!(r.root, Path::new("/run/x/ns2"));
    }
}
