//! The `Containers` port (what the Instance controller needs from a container runtime) and its
//! containerd implementation over gRPC: containers and tasks in one namespace, our own rootfs
//! mounts (no snapshotter), stdout/stderr to files, exits and OOMs as a stream of events.
//!
//! What the port guarantees: `run` returns once the task runs (its exit is never missed: the
//! wait is registered before the start); `remove` is idempotent and leaves neither task nor
//! container; `events` wakes on every exit and OOM of the namespace.

use std::collections::HashMap;
use std::path::PathBuf;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    container::Runtime, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteTaskRequest, GetRequest, KillRequest, ListContainersRequest,
    StartRequest, SubscribeRequest, WaitRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};
use containerd_client::types::Mount;
use containerd_client::with_namespace;
use futures::stream::BoxStream;
use futures::StreamExt;
use prost::Message;

/// Errors of the port, named after the failed operation.
#[derive(Debug, thiserror::Error)]
pub enum ContainersError {
    #[error("failed to connect to containerd at {path}: {message}")]
    Connect { path: String, message: String },
    #[error("failed to {op} {id}: {message}")]
    Call {
        op: &'static str,
        id: String,
        message: String,
    },
    #[error("failed to encode the runtime spec: {0}")]
    Spec(#[from] serde_json::Error),
}

impl ContainersError {
    pub fn reason(&self) -> &'static str {
        match self {
            ContainersError::Connect { .. } => "RuntimeUnavailable",
            ContainersError::Call { .. } => "RuntimeCallFailed",
            ContainersError::Spec(_) => "InvalidRuntimeSpec",
        }
    }
}

/// A mount handed to the runtime as the task's rootfs (overlay, bind, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootfsMount {
    pub type_: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Everything needed to run one task.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    pub id: String,
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: Vec<RootfsMount>,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    pub labels: HashMap<String, String>,
}

/// A state change of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskEvent {
    Exited { id: String, pid: u32, status: u32 },
    Oom { id: String },
}

impl TaskEvent {
    pub fn id(&self) -> &str {
        match self {
            TaskEvent::Exited { id, .. } | TaskEvent::Oom { id } => id,
        }
    }
}

/// A container the runtime knows, and its task if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub labels: HashMap<String, String>,
    /// Pid and whether it still runs.
    pub task: Option<(u32, bool)>,
}

/// What the Instance controller needs from a container runtime.
#[async_trait::async_trait]
pub trait Containers: Send + Sync {
    /// Creates the container and its task and starts it; returns the pid.
    async fn run(&self, task: &TaskSpec) -> Result<u32, ContainersError>;
    async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainersError>;
    /// Waits for the task to exit; returns its exit status.
    async fn wait(&self, id: &str) -> Result<u32, ContainersError>;
    /// Deletes the task (if any) and the container; fine if neither exists.
    async fn remove(&self, id: &str) -> Result<(), ContainersError>;
    async fn list(&self) -> Result<Vec<TaskInfo>, ContainersError>;
    /// Exits and OOMs of every task of the namespace, from now on.
    async fn events(&self) -> Result<BoxStream<'static, TaskEvent>, ContainersError>;
}

fn decode_event(any: prost_types::Any) -> Option<TaskEvent> {
    if any.type_url.ends_with("TaskExit") {
        let x = containerd_client::events::TaskExit::decode(any.value.as_slice()).ok()?;
        Some(TaskEvent::Exited {
            id: x.container_id,
            pid: x.pid,
            status: x.exit_status,
        })
    } else if any.type_url.ends_with("TaskOOM") {
        let x = containerd_client::events::TaskOom::decode(any.value.as_slice()).ok()?;
        Some(TaskEvent::Oom { id: x.container_id })
    } else {
        None
    }
}

/// containerd over its gRPC socket.
#[derive(Clone)]
pub struct Containerd {
    channel: Channel,
    namespace: String,
    runtime: String,
}

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

fn call(op: &'static str, id: &str) -> impl FnOnce(tonic::Status) -> ContainersError {
    let id = id.to_string();
    move |s| ContainersError::Call {
        op,
        id,
        message: s.message().to_string(),
    }
}

impl Containerd {
    /// Connects to containerd at `socket`, working in `namespace` with the runc v2 shim.
    pub async fn connect(
        socket: &std::path::Path,
        namespace: &str,
    ) -> Result<Self, ContainersError> {
        let channel =
            containerd_client::connect(socket)
                .await
                .map_err(|e| ContainersError::Connect {
                    path: socket.display().to_string(),
                    message: e.to_string(),
                })?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
            runtime: "io.containerd.runc.v2".into(),
        })
    }

    fn ns(&self) -> &str {
        &self.namespace
    }
}

#[async_trait::async_trait]
impl Containers for Containerd {
    async fn run(&self, t: &TaskSpec) -> Result<u32, ContainersError> {
        let spec = prost_types::Any {
            type_url: SPEC_TYPE.into(),
            value: serde_json::to_vec(&t.spec)?,
        };
        let container = Container {
            id: t.id.clone(),
            labels: t.labels.clone(),
            runtime: Some(Runtime {
                name: self.runtime.clone(),
                options: None,
            }),
            spec: Some(spec),
            ..Default::default()
        };
        let mut containers = ContainersClient::new(self.channel.clone());
        let req = with_namespace!(
            CreateContainerRequest {
                container: Some(container)
            },
            self.ns()
        );
        containers
            .create(req)
            .await
            .map_err(call("create container", &t.id))?;
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = CreateTaskRequest {
            container_id: t.id.clone(),
            rootfs: t
                .rootfs
                .iter()
                .map(|m| Mount {
                    r#type: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                    ..Default::default()
                })
                .collect(),
            // file:// makes the shim create the file and append to it.
            stdout: format!("file://{}", t.stdout.display()),
            stderr: format!("file://{}", t.stderr.display()),

            ..Default::default()
        };
        let created = tasks.create(with_namespace!(req, self.ns())).await;
        if let Err(e) = created {
            let _ = self.remove(&t.id).await;
            return Err(call("create task", &t.id)(e));
        }
        let resp = tasks
            .start(with_namespace!(
                StartRequest {
                    container_id: t.id.clone(),
                    ..Default::default()
                },
                self.ns()
            ))
            .await
            .map_err(call("start task", &t.id))?;
        Ok(resp.into_inner().pid)
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), ContainersError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = KillRequest {
            container_id: id.to_string(),
            signal,
            all: true,
            ..Default::default()
        };
        match tasks.kill(with_namespace!(req, self.ns())).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(call("kill task", id)(s)),
        }
    }

    async fn wait(&self, id: &str) -> Result<u32, ContainersError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = WaitRequest {
            container_id: id.to_string(),
            ..Default::default()
        };
        let r = tasks
            .wait(with_namespace!(req, self.ns()))
            .await
            .map_err(call("wait for task", id))?;
        Ok(r.into_inner().exit_status)
    }

    async fn remove(&self, id: &str) -> Result<(), ContainersError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = DeleteTaskRequest {
            container_id: id.to_string(),
        };
        match tasks.delete(with_namespace!(req, self.ns())).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(call("delete task", id)(s)),
        }
        let mut containers = ContainersClient::new(self.channel.clone());
        let req = DeleteContainerRequest { id: id.to_string() };
        match containers.delete(with_namespace!(req, self.ns())).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(call("delete container", id)(s)),
        }
    }

    async fn list(&self) -> Result<Vec<TaskInfo>, ContainersError> {
        let mut containers = ContainersClient::new(self.channel.clone());
        let list = containers
            .list(with_namespace!(ListContainersRequest::default(), self.ns()))
            .await
            .map_err(call("list containers", ""))?
            .into_inner();
        let mut out = Vec::new();
        let mut tasks = TasksClient::new(self.channel.clone());
        for c in list.containers {
            let req = GetRequest {
                container_id: c.id.clone(),
                ..Default::default()
            };
            let task = match tasks.get(with_namespace!(req, self.ns())).await {
                Ok(r) => r.into_inner().process.map(|p| (p.pid, p.status == 2)),
                Err(s) if s.code() == Code::NotFound => None,
                Err(s) => return Err(call("get task", &c.id)(s)),
            };
            out.push(TaskInfo {
                id: c.id,
                labels: c.labels,
                task,
            });
        }
        Ok(out)
    }

    async fn events(&self) -> Result<BoxStream<'static, TaskEvent>, ContainersError> {
        // containerd answers a subscription only with its first event, so the subscription
        // lives in a task of its own (re-subscribing if containerd goes away) and feeds a channel.
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (channel, ns) = (self.channel.clone(), self.namespace.clone());
        tokio::spawn(async move {
            while !tx.is_closed() {
                let mut events = EventsClient::new(channel.clone());
                let req = SubscribeRequest {
                    filters: vec![
                        format!("namespace==\"{ns}\",topic==\"/tasks/exit\""),
                        format!("namespace==\"{ns}\",topic==\"/tasks/oom\""),
                    ],
                };
                if let Ok(resp) = events.subscribe(Request::new(req)).await {
                    let mut stream = resp.into_inner();
                    while let Some(Ok(env)) = stream.next().await {
                        if let Some(ev) = env.event.and_then(decode_event) {
                            if tx.send(ev).is_err() {
                                return;
                            }
                        }
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed())
    }
}
