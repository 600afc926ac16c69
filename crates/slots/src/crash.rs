//! A test seam standing for a kill of the agent: the steps of an OS update ask it before each
//! record and side effect, and a set point makes the step stop there as a killed agent would
//! (nothing after it happens); the test then starts a new agent on what is on disk. In a
//! machine under test (the VM suite), a point can instead be armed from a file named by
//! `AOSD_CRASHPOINT_FILE`; reaching it cuts the power.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The environment variable naming the file that arms a power cut (the VM suite's).
pub const CRASHPOINT_FILE_ENV: &str = "AOSD_CRASHPOINT_FILE";

/// The agent was killed at this point (a test's crash point).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("killed at {0}")]
pub struct Killed(pub String);

/// A test seam standing for a kill: `act` asks it before each record and side effect, and a
/// set point makes the reconcile stop there as a killed agent would (nothing after it
/// happens, no status is written); the test then restarts the agent.
#[derive(Default)]
pub struct Crashpoints {
    armed: Mutex<Option<String>>,
    killed: Mutex<Option<String>>,
    /// The file that armed the point: reaching it cuts the power.
    power_cut: Option<PathBuf>,
}

impl Crashpoints {
    /// The points of `runtime` (`boot`, `rootfs`): none, unless `AOSD_CRASHPOINT_FILE` names
    /// a file that holds `RUNTIME:POINT` (e.g. `rootfs:stage:copied`). Then reaching that
    /// point removes the file (durably: its directory is synced, nothing else is) and powers
    /// the machine off at once, with nothing else synced: a power cut at a named step. The
    /// file stays until its point is reached, across any number of boots.
    pub fn from_env(runtime: &str) -> Crashpoints {
        match std::env::var_os(CRASHPOINT_FILE_ENV) {
            Some(file) => Self::from_file(runtime, PathBuf::from(file)),
            None => Crashpoints::default(),
        }
    }

    /// The point of `runtime` that `file` arms, as [`Crashpoints::from_env`] reads it.
    pub fn from_file(runtime: &str, file: PathBuf) -> Crashpoints {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let Some(point) = text
            .trim()
            .strip_prefix(runtime)
            .and_then(|p| p.strip_prefix(':'))
        else {
            return Crashpoints::default();
        };
        tracing::warn!(runtime, point, file = %file.display(), "a power cut is armed");
        let c = Crashpoints {
            power_cut: Some(file),
            ..Crashpoints::default()
        };
        c.set(point);
        c
    }

    /// Stops at the point named `at` (once).
    pub fn set(&self, at: &str) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = Some(at.into());
    }

    /// The point set and not reached yet.
    pub fn armed(&self) -> Option<String> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fails with `Crashed` when the point `name` is set (it is then cleared).
    pub fn hit(&self, name: &str) -> Result<(), Killed> {
        let mut p = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        if p.as_deref() == Some(name) {
            *p = None;
            return Err(Killed(name.into()));
        }
        Ok(())
    }

    /// Says that the agent stopped at `at` (and cuts the power when a file armed it).
    pub fn killed(&self, at: &str) {
        tracing::debug!(at, "crash point reached");
        *self.killed.lock().unwrap_or_else(|e| e.into_inner()) = Some(at.into());
        if let Some(file) = &self.power_cut {
            cut_power(file, at);
        }
    }

    /// The point the agent stopped at, if it did (once).
    pub fn take_killed(&self) -> Option<String> {
        self.killed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Removes `file` durably and powers off without syncing anything else. Returns only if the
/// power-off failed (then the agent stays stopped at the point, as a killed one would).
fn cut_power(file: &Path, at: &str) {
    let removed = std::fs::remove_file(file).and_then(|()| {
        let dir = file.parent().unwrap_or(Path::new("/"));
        std::fs::File::open(dir)?.sync_all()
    });
    if let Err(e) = removed {
        tracing::error!(at, error = %e, "cannot disarm the power cut: not cutting");
        return;
    }
    tracing::warn!(at, "cutting the power");
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    tracing::error!(at, error = %e, "reboot(2) power-off failed");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_file_arms_only_its_runtime_and_only_that_point() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("crashpoint");
        std::fs::write(&file, "rootfs:stage:copied\n").unwrap();
        let c = Crashpoints::from_file("rootfs", file.clone());
        assert_eq!(c.armed().as_deref(), Some("stage:copied"));
        assert!(c.hit("stage").is_ok());
        assert!(Crashpoints::from_file("boot", file.clone())
            .armed()
            .is_none());
        let missing = dir.path().join("none");
        assert!(Crashpoints::from_file("rootfs", missing).armed().is_none());
    }
}
