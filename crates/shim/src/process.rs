//! One process the shim watches (a task's first process or an exec): its pid, whether it was
//! started, and its exit once reaped, which any number of `Wait` calls await.

use std::sync::Mutex;

use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use tokio::sync::watch;

/// How a process ended.
#[derive(Clone, Debug)]
pub struct Exit {
    pub status: u32,
    pub at: Timestamp,
}

/// containerd's view of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Created,
    Running,
    Stopped,
}

pub struct Process {
    pid: Mutex<u32>,
    started: Mutex<bool>,
    exit: watch::Sender<Option<Exit>>,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            pid: Mutex::new(0),
            started: Mutex::new(false),
            exit: watch::channel(None).0,
        }
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_pid(&self, pid: u32) {
        *self.pid.lock().unwrap_or_else(|p| p.into_inner()) = pid;
    }

    pub fn set_started(&self) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }

    pub fn exit(&self) -> Option<Exit> {
        self.exit.borrow().clone()
    }

    pub fn set_exit(&self, status: u32) -> Exit {
        let exit = Exit { status, at: now() };
        self.exit.send_replace(Some(exit.clone()));
        exit
    }

    pub fn phase(&self) -> Phase {
        if self.exit().is_some() {
            Phase::Stopped
        } else if *self.started.lock().unwrap_or_else(|p| p.into_inner()) {
            Phase::Running
        } else {
            Phase::Created
        }
    }

    /// Resolves once the process exited.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exit.subscribe();
        loop {
            if let Some(e) = rx.borrow_and_update().clone() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as self: unreachable, but never spin.
                std::future::pending::<()>().await;
            }
        }
    }
}

pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_process_goes_from_created_to_running_to_stopped_and_wakes_every_waiter() {
        let p = std::sync::Arc::new(Process::default());
        assert_eq!(p.phase(), Phase::Created);
        p.set_started();
        assert_eq!(p.phase(), Phase::Running);
        let a = tokio::spawn({
            let p = p.clone();
            async move { p.wait().await.status }
        });
        tokio::task::yield_now().await;
        p.set_exit(137);
        assert_eq!(a.await.unwrap(), 137);
        assert_eq!(p.wait().await.status, 137);
        assert_eq!(p.phase(), Phase::Stopped);
    }
}
