//! The `Containers` port (what the Instance controller needs from a container runtime) and its
//! containerd implementation over gRPC: containers and tasks in one namespace, our own rootfs
//! mounts (no snapshotter), stdout/stderr to files, exits and OOMs as a stream of events.
//!
//! What the port guarantees: `run` returns once the task runs (its exit is never missed: the
//! wait is registered before the start); `remove` is idempotent and leaves neither task nor
//! container; `events` wakes on every exit and OOM of the namespace.
#![warn(missing_docs)]

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
use std::path::PathBuf;

/// Errors of the port, named after the failed operation.
pub mod conformance;
pub mod fake;
mod group;
mod port;
mod runtime;
mod stop;

use group::Groups;
pub use group::{GROUP_ANNOTATION, GROUP_LABEL};
pub use port::*;
pub use runtime::RuntimeOptions;
pub use stop::stop_task;

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
    options: RuntimeOptions,
    /// Tasks per shim; 1 or less: no groups (containerd's default, a shim per task).
    shim_group: usize,
    /// Known once the first task of this process runs (from the containers' labels).
    groups: std::sync::Arc<tokio::sync::Mutex<Option<Groups>>>,
}

/// The containerd runtime tasks run with unless told otherwise: containerd's Go runc v2 shim.
pub const DEFAULT_SHIM: &str = "io.containerd.runc.v2";

const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

fn call(op: &'static str, id: &str) -> impl FnOnce(tonic::Status) -> ContainersError {
    let id = id.to_string();
    move |s| {
        if s.code() == Code::Unavailable {
            return ContainersError::Unavailable {
                op,
                id,
                message: s.message().to_string(),
            };
        }
        ContainersError::Call {
            op,
            id,
            message: s.message().to_string(),
        }
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
            runtime: DEFAULT_SHIM.into(),
            options: RuntimeOptions::default(),
            shim_group: 1,
            groups: Default::default(),
        })
    }

    /// Runs up to `size` tasks in one runc v2 shim (see the `group` module); 1: a shim each.
    pub fn with_shim_group(mut self, size: usize) -> Self {
        self.shim_group = size;
        self
    }

    /// The shim group task `id` joins, if tasks are grouped.
    async fn join_group(&self, id: &str) -> Result<Option<String>, ContainersError> {
        if self.shim_group <= 1 {
            return Ok(None);
        }
        let mut groups = self.groups.lock().await;
        if groups.is_none() {
            let list = self.containers().await?;
            *groups = Some(Groups::from_labels(
                list.iter().map(|c| (c.id.as_str(), &c.labels)),
            ));
        }
        Ok(groups.as_mut().map(|g| g.assign(id, self.shim_group)))
    }

    /// The containers of the namespace (without their tasks).
    async fn containers(&self) -> Result<Vec<Container>, ContainersError> {
        let mut containers = ContainersClient::new(self.channel.clone());
        Ok(containers
            .list(with_namespace!(ListContainersRequest::default(), self.ns()))
            .await
            .map_err(call("list containers", ""))?
            .into_inner()
            .containers)
    }

    /// Task `id`'s container is gone: its place in a group is free.
    async fn leave_group(&self, id: &str) {
        if let Some(g) = self.groups.lock().await.as_mut() {
            g.release(id);
        }
    }

    /// Runs tasks with the containerd runtime `name` (default [`DEFAULT_SHIM`]).
    pub fn with_shim(mut self, name: &str) -> Self {
        self.runtime = name.to_string();
        self
    }

    /// Runs tasks with this OCI runtime binary and state root.
    pub fn with_runtime(mut self, options: RuntimeOptions) -> Self {
        self.options = options;
        self
    }

    fn runtime_options(&self) -> Option<prost_types::Any> {
        self.options.encode()
    }

    async fn task_state(&self, id: &str) -> Result<Option<TaskState>, ContainersError> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = GetRequest {
            container_id: id.to_string(),
            ..Default::default()
        };
        match tasks.get(with_namespace!(req, self.ns())).await {
            Ok(r) => Ok(r.into_inner().process.map(|p| TaskState {
                pid: p.pid,
                // containerd's Status: 2 = RUNNING, 4 = PAUSED, 5 = PAUSING.
                running: matches!(p.status, 2 | 4 | 5),
                exit_status: p.exit_status,
            })),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(call("get task", id)(s)),
        }
    }

    fn ns(&self) -> &str {
        &self.namespace
    }
}

#[async_trait::async_trait]
impl Containers for Containerd {
    async fn ping(&self) -> Result<String, ContainersError> {
        let mut v = containerd_client::services::v1::version_client::VersionClient::new(
            self.channel.clone(),
        );
        let r = v
            .version(())
            .await
            .map_err(call("ask the version of", "containerd"))?;
        Ok(r.into_inner().version)
    }

    async fn release_idle(&self) -> Result<(), ContainersError> {
        let root = if self.options.root.is_empty() {
            PathBuf::from("/run/containerd/runc")
        } else {
            PathBuf::from(&self.options.root)
        };
        // A task's state is there: nothing to ask containerd (whose list carries every spec).
        let busy =
            std::fs::read_dir(root.join(&self.namespace)).is_ok_and(|mut d| d.next().is_some());
        // A container made but not started yet has no state there: ask before removing.
        if busy || !self.containers().await?.is_empty() {
            return Ok(());
        }
        // Empty once no container exists; runc makes it again for the next one.
        match std::fs::remove_dir(root.join(&self.namespace)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => Ok(()),
            Err(source) => Err(ContainersError::Io {
                what: format!(
                    "failed to remove runc's state of namespace {}",
                    self.namespace
                ),
                source,
            }),
        }
    }

    async fn run(&self, t: &TaskSpec) -> Result<u32, ContainersError> {
        let mut labels = t.labels.clone();
        let mut spec = t.spec.clone();
        if let Some(group) = self.join_group(&t.id).await? {
            let mut annotations = spec.annotations().clone().unwrap_or_default();
            annotations.insert(GROUP_ANNOTATION.into(), group.clone());
            spec.set_annotations(Some(annotations));
            labels.insert(GROUP_LABEL.into(), group);
        }
        let spec = prost_types::Any {
            type_url: SPEC_TYPE.into(),
            value: serde_json::to_vec(&spec)?,
        };
        let container = Container {
            id: t.id.clone(),
            labels,
            runtime: Some(Runtime {
                name: self.runtime.clone(),
                options: self.runtime_options(),
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
        if let Err(e) = containers.create(req).await {
            if e.code() != Code::AlreadyExists {
                self.leave_group(&t.id).await;
            }
            return Err(call("create container", &t.id)(e));
        }
        let mut tasks = TasksClient::new(self.channel.clone());
        let (stdout, stderr) = t.io.uris();
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
            stdout,
            stderr,
            options: self.runtime_options(),
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
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(call("delete container", id)(s)),
        }
        self.leave_group(id).await;
        Ok(())
    }

    async fn list(&self) -> Result<Vec<TaskInfo>, ContainersError> {
        let mut out = Vec::new();
        for c in self.containers().await? {
            let task = self.task_state(&c.id).await?;
            out.push(TaskInfo {
                id: c.id,
                labels: c.labels,
                task,
            });
        }
        Ok(out)
    }

    async fn inspect(&self, id: &str) -> Result<Option<TaskInfo>, ContainersError> {
        let mut containers = ContainersClient::new(self.channel.clone());
        let req = containerd_client::services::v1::GetContainerRequest { id: id.to_string() };
        let c = match containers.get(with_namespace!(req, self.ns())).await {
            Ok(r) => r.into_inner().container,
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => return Err(call("get container", id)(s)),
        };
        let Some(c) = c else { return Ok(None) };
        Ok(Some(TaskInfo {
            task: self.task_state(id).await?,
            id: c.id,
            labels: c.labels,
        }))
    }

    async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: &[String],
        env: &[String],
        user: (u32, u32),
    ) -> Result<u32, ContainersError> {
        use containerd_client::services::v1::{DeleteProcessRequest, ExecProcessRequest};
        let process = serde_json::json!({
            "args": args, "env": env, "cwd": "/", "terminal": false,
            "user": {"uid": user.0, "gid": user.1}, "noNewPrivileges": true,
        });
        let mut tasks = TasksClient::new(self.channel.clone());
        let req = ExecProcessRequest {
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
                value: serde_json::to_vec(&process)?,
            }),
            ..Default::default()
        };
        tasks
            .exec(with_namespace!(req, self.ns()))
            .await
            .map_err(call("exec in", id))?;
        // A finished exec keeps its status until the process is deleted: wait after start.
        let result = async {
            let mut tasks = TasksClient::new(self.channel.clone());
            tasks
                .start(with_namespace!(
                    StartRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                    },
                    self.ns()
                ))
                .await
                .map_err(call("start exec in", id))?;
            let r = tasks
                .wait(with_namespace!(
                    WaitRequest {
                        container_id: id.to_string(),
                        exec_id: exec_id.to_string(),
                    },
                    self.ns()
                ))
                .await
                .map_err(call("wait for exec in", id))?;
            Ok(r.into_inner().exit_status)
        }
        .await;
        let mut tasks = TasksClient::new(self.channel.clone());
        let _ = tasks
            .delete_process(with_namespace!(
                DeleteProcessRequest {
                    container_id: id.to_string(),
                    exec_id: exec_id.to_string(),
                },
                self.ns()
            ))
            .await;
        result
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
