//! A test seam standing for a kill of the agent: the steps of an OS update ask it before each
//! record and side effect, and a set point makes the step stop there as a killed agent would
//! (nothing after it happens); the test then starts a new agent on what is on disk.

use std::sync::Mutex;

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
}

impl Crashpoints {
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

    /// Says that the agent stopped at `at`.
    pub fn killed(&self, at: &str) {
        tracing::debug!(at, "crash point reached");
        *self.killed.lock().unwrap_or_else(|e| e.into_inner()) = Some(at.into());
    }

    /// The point the agent stopped at, if it did (once).
    pub fn take_killed(&self) -> Option<String> {
        self.killed.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}
