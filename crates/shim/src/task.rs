//! The task service's state: every container of this shim by id, the processes it watches
//! until they are reaped, and the events containerd forwards to its clients (`/tasks/exit`
//! and `/tasks/oom` are what aosd listens to). The requests themselves are in [`crate::rpc`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::protos::api::{self, Status};
use containerd_shim::protos::events::task::{TaskExit, TaskOOM};
use containerd_shim::protos::protobuf::{Message, MessageDyn};
use containerd_shim::protos::shim::oci::Options;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{self, Code};
use containerd_shim::{Context, TtrpcResult};

use crate::container::{Container, Exec};
use crate::exits::Exits;
use crate::process::Phase;

pub(crate) fn status(code: Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

pub(crate) fn failed(e: impl std::fmt::Display) -> ttrpc::Error {
    status(Code::UNKNOWN, e.to_string())
}

/// The runc options containerd passes with a task (binary and state root), or runc's defaults.
pub(crate) fn runtime_options(req: &api::CreateTaskRequest) -> Options {
    req.options
        .as_ref()
        .and_then(|any| Options::parse_from_bytes(&any.value).ok())
        .unwrap_or_default()
}

pub(crate) fn phase_status(p: Phase) -> Status {
    match p {
        Phase::Created => Status::CREATED,
        Phase::Running => Status::RUNNING,
        Phase::Stopped => Status::STOPPED,
    }
}

struct Shared {
    namespace: String,
    exits: Arc<Exits>,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    containers: Mutex<HashMap<String, Arc<Container>>>,
}

/// The task service of one shim process (one container, or a group of them).
#[derive(Clone)]
pub struct Service(Arc<Shared>);

impl Service {
    pub fn new(
        namespace: String,
        exits: Arc<Exits>,
        publisher: RemotePublisher,
        exit: Arc<ExitSignal>,
    ) -> Service {
        Service(Arc::new(Shared {
            namespace,
            exits,
            publisher,
            exit,
            containers: Mutex::new(HashMap::new()),
        }))
    }

    fn containers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.0.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn namespace(&self) -> &str {
        &self.0.namespace
    }

    pub fn exits(&self) -> Arc<Exits> {
        self.0.exits.clone()
    }

    pub fn get(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.containers()
            .get(id)
            .cloned()
            .ok_or_else(|| status(Code::NOT_FOUND, format!("container {id} not found")))
    }

    pub fn insert(&self, c: Arc<Container>) {
        self.containers().insert(c.id.clone(), c);
    }

    pub fn remove(&self, id: &str) {
        self.containers().remove(id);
    }

    pub fn is_empty(&self) -> bool {
        self.containers().is_empty()
    }

    pub fn shut_down(&self) {
        self.0.exit.signal();
    }

    /// The container and, for an exec id, the exec.
    pub fn process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> TtrpcResult<(Arc<Container>, Option<Arc<Exec>>)> {
        let c = self.get(id)?;
        if exec_id.is_empty() {
            return Ok((c, None));
        }
        let e = c
            .exec(exec_id)
            .ok_or_else(|| status(Code::NOT_FOUND, format!("exec {exec_id} of {id} not found")))?;
        Ok((c, Some(e)))
    }

    pub async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let s = &self.0;
        if let Err(e) = s
            .publisher
            .publish(Context::default(), topic, &s.namespace, event)
            .await
        {
            log::warn!("publish {topic}: {e}");
        }
    }

    /// Watches a process until it is reaped, then records its exit and tells containerd: for
    /// a task's first process, an OOM kill in its cgroup first, and only once its log has
    /// everything it wrote.
    pub fn watch(&self, c: Arc<Container>, exec: Option<(String, Arc<Exec>)>, pid: u32) {
        let svc = self.clone();
        let exited = self.0.exits.expect(pid);
        tokio::spawn(async move {
            let code = exited.await.unwrap_or(255) as u32;
            let (process, exec_id) = match &exec {
                Some((id, e)) => (&e.process, id.clone()),
                None => (&c.init, c.id.clone()),
            };
            if exec.is_none() {
                let oom = c.cgroup.as_ref().map_or(0, |g| g.oom_kills());
                if oom > 0 {
                    let ev = TaskOOM {
                        container_id: c.id.clone(),
                        ..Default::default()
                    };
                    svc.publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(ev))
                        .await;
                }
                c.drain().await;
            }
            let exit = process.set_exit(code);
            let ev = TaskExit {
                container_id: c.id.clone(),
                id: exec_id,
                pid,
                exit_status: code,
                exited_at: Some(exit.at).into(),
                ..Default::default()
            };
            svc.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(ev))
                .await;
        });
    }
}
