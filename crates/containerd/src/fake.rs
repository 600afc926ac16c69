//! A `Containers` in memory, for tests of whoever drives the port (the Instance controller's
//! reconciler tests run on it without root or containerd). It passes the same
//! [`crate::conformance`] suite as containerd. A task's process is played from its args:
//! `exit N` ends at once with status N, `sleep` runs until killed (status 128 + signal, or 0
//! for SIGTERM when `trap` comes first: `trap sleep` ends on SIGTERM with 0), anything else runs
//! until killed. `exec` answers `exit N` with N. Every call is recorded in [`FakeContainers::calls`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use crate::{Containers, ContainersError, TaskEvent, TaskInfo, TaskSpec, TaskState};

struct Task {
    state: TaskState,
    /// Ends on SIGTERM with 0 (a process that handles it).
    graceful: bool,
    exited: watch::Sender<Option<u32>>,
}

struct Container {
    labels: HashMap<String, String>,
    task: Option<Task>,
}

#[derive(Default)]
struct State {
    containers: BTreeMap<String, Container>,
    next_pid: u32,
    down: bool,
    calls: Vec<String>,
}

/// The fake; cheap to clone (clones share their state).
#[derive(Clone)]
pub struct FakeContainers {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<TaskEvent>,
}

impl Default for FakeContainers {
    fn default() -> Self {
        let (events, _) = broadcast::channel(1024);
        FakeContainers {
            state: Arc::new(Mutex::new(State {
                next_pid: 1000,
                ..State::default()
            })),
            events,
        }
    }
}

fn exit_code(args: &[String]) -> Option<u32> {
    match args {
        [a, n, ..] if a == "exit" => n.parse().ok(),
        _ => None,
    }
}

impl FakeContainers {
    /// A runtime without containers.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The calls made so far, as `op id` lines.
    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    /// Makes every call fail as containerd's absence does (or answer again).
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    /// Ends a running task with `status` (as a crash would), with its event.
    pub fn exit(&self, id: &str, status: u32) {
        let mut s = self.lock();
        if let Some(t) = s.containers.get_mut(id).and_then(|c| c.task.as_mut()) {
            Self::end(t, status, id, &self.events);
        }
    }

    /// Reports an OOM of a task (its exit comes separately).
    pub fn oom(&self, id: &str) {
        let _ = self.events.send(TaskEvent::Oom { id: id.into() });
    }

    fn end(t: &mut Task, status: u32, id: &str, events: &broadcast::Sender<TaskEvent>) {
        if !t.state.running {
            return;
        }
        t.state.running = false;
        t.state.exit_status = status;
        t.exited.send_replace(Some(status));
        let _ = events.send(TaskEvent::Exited {
            id: id.into(),
            pid: t.state.pid,
            status,
        });
    }

    fn call(
        &self,
        op: &'static str,
        id: &str,
    ) -> Result<std::sync::MutexGuard<'_, State>, ContainersError> {
        let mut s = self.lock();
        s.calls.push(format!("{op} {id}"));
        if s.down {
            return Err(ContainersError::Unavailable {
                op,
                id: id.into(),
                message: "the fake runtime is down".into(),
            });
        }
        Ok(s)
    }
}

#[async_trait::async_trait]
impl Containers for FakeContainers {
    async fn ping(&self) -> Result<String, ContainersError> {
        drop(self.call("ping", "")?);
        Ok("fake".into())
    }

    async fn run(&self, t: &TaskSpec) -> Result<u32, ContainersError> {
        let mut s = self.call("run", &t.id)?;
        if s.containers.contains_key(&t.id) {
            return Err(ContainersError::Call {
                op: "create container",
                id: t.id.clone(),
                message: "already exists".into(),
            });
        }
        s.next_pid += 1;
        let pid = s.next_pid;
        let args: Vec<String> = t
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        let (exited, _) = watch::channel(None);
        let mut task = Task {
            state: TaskState {
                pid,
                running: true,
                exit_status: 0,
            },
            graceful: args.first().is_some_and(|a| a == "trap"),
            exited,
        };
        if let Some(code) = exit_code(&args) {
            Self::end(&mut task, code, &t.id, &self.events);
        }
        s.containers.insert(
            t.id.clone(),
            Container {
                labels: t.labels.clone(),
                task: Some(task),
            },
        );
        Ok(pid)
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainersError> {
        let mut s = self.call("kill", id)?;
        if let Some(t) = s.containers.get_mut(id).and_then(|c| c.task.as_mut()) {
            match signal {
                15 if t.graceful => Self::end(t, 0, id, &self.events),
                15 => {} // ignored, as PID 1 without a handler does
                sig => Self::end(t, 128 + sig, id, &self.events),
            }
        }
        Ok(())
    }

    async fn wait(&self, id: &str) -> Result<u32, ContainersError> {
        let mut rx = {
            let s = self.call("wait", id)?;
            match s.containers.get(id).and_then(|c| c.task.as_ref()) {
                Some(t) => t.exited.subscribe(),
                None => {
                    return Err(ContainersError::Call {
                        op: "wait",
                        id: id.into(),
                        message: "no task".into(),
                    })
                }
            }
        };
        loop {
            if let Some(code) = *rx.borrow_and_update() {
                return Ok(code);
            }
            if rx.changed().await.is_err() {
                return Err(ContainersError::Call {
                    op: "wait",
                    id: id.into(),
                    message: "the task was removed".into(),
                });
            }
        }
    }

    async fn remove(&self, id: &str) -> Result<(), ContainersError> {
        let mut s = self.call("remove", id)?;
        if let Some(c) = s.containers.get_mut(id) {
            if let Some(t) = c.task.as_mut() {
                Self::end(t, 128 + 9, id, &self.events);
            }
        }
        s.containers.remove(id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TaskInfo>, ContainersError> {
        let s = self.call("list", "")?;
        Ok(s.containers
            .iter()
            .map(|(id, c)| TaskInfo {
                id: id.clone(),
                labels: c.labels.clone(),
                task: c.task.as_ref().map(|t| t.state),
            })
            .collect())
    }

    async fn inspect(&self, id: &str) -> Result<Option<TaskInfo>, ContainersError> {
        let s = self.call("inspect", id)?;
        Ok(s.containers.get(id).map(|c| TaskInfo {
            id: id.into(),
            labels: c.labels.clone(),
            task: c.task.as_ref().map(|t| t.state),
        }))
    }

    async fn exec(
        &self,
        id: &str,
        _exec_id: &str,
        args: &[String],
        _env: &[String],
        _user: (u32, u32),
    ) -> Result<u32, ContainersError> {
        let s = self.call("exec", id)?;
        let running = s
            .containers
            .get(id)
            .and_then(|c| c.task.as_ref())
            .is_some_and(|t| t.state.running);
        if !running {
            return Err(ContainersError::Call {
                op: "exec in",
                id: id.into(),
                message: "the task is not running".into(),
            });
        }
        Ok(exit_code(args).unwrap_or(0))
    }

    async fn events(&self) -> Result<BoxStream<'static, TaskEvent>, ContainersError> {
        drop(self.call("events", "")?);
        let rx = self.events.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ev, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }

    async fn release_idle(&self) -> Result<(), ContainersError> {
        drop(self.call("release_idle", "")?);
        Ok(())
    }
}
