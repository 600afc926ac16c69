//! The requests of containerd's task API, answered from [`crate::task::Service`]'s containers.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::protos::api;
use containerd_shim::protos::api::Empty;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExecAdded, TaskStart};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::{r#async::TtrpcContext, Code};
use containerd_shim::TtrpcResult;

use crate::container::{Container, CreateArgs, Exec};
use crate::process::{Phase, Process};
use crate::runc::Runc;
use crate::task::{failed, phase_status, runtime_options, status, Service};

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        if self.get(&req.id).is_ok() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("container {} exists", req.id),
            ));
        }
        // stdin is not served: the process reads /dev/null (ctr passes a FIFO all the same).
        if req.terminal {
            return Err(status(Code::INVALID_ARGUMENT, "a terminal is not served"));
        }
        let o = runtime_options(&req);
        let runc = Runc::new(&o.binary_name, &o.root, self.namespace(), self.exits());
        let bundle = Path::new(&req.bundle);
        // For the `delete` action, which runs without this request when the shim is gone.
        if let Err(e) = containerd_shim::util::write_options(bundle, &o).await {
            log::warn!("cannot record the runtime options in the bundle: {e}");
        }
        let c = Container::create(CreateArgs {
            id: &req.id,
            bundle,
            rootfs: &req.rootfs,
            stdout: &req.stdout,
            stderr: &req.stderr,
            runc,
        })
        .await
        .map_err(failed)?;
        let c = Arc::new(c);
        let pid = c.init.pid();
        self.insert(c.clone());
        self.watch(c, None, pid);
        let ev = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            pid,
            ..Default::default()
        };
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(ev))
            .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let (c, exec) = self.process(&req.id, &req.exec_id)?;
        let pid = match exec {
            Some(e) => {
                if e.process.phase() != Phase::Created {
                    return Err(status(Code::FAILED_PRECONDITION, "the exec was started"));
                }
                let pid = c.start_exec(&req.exec_id, &e).await.map_err(failed)?;
                self.watch(c.clone(), Some((req.exec_id.clone(), e)), pid);
                pid
            }
            None => {
                if c.init.phase() != Phase::Created {
                    return Err(status(Code::FAILED_PRECONDITION, "the task was started"));
                }
                c.runc
                    .run(&c.bundle, &["start", &c.id], None)
                    .await
                    .map_err(failed)?;
                c.init.set_started();
                let ev = TaskStart {
                    container_id: c.id.clone(),
                    pid: c.init.pid(),
                    ..Default::default()
                };
                self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(ev))
                    .await;
                c.init.pid()
            }
        };
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<Empty> {
        let (c, exec) = self.process(&req.id, &req.exec_id)?;
        let finished = || status(Code::NOT_FOUND, "process already finished");
        match exec {
            Some(e) => {
                if e.process.phase() != Phase::Running {
                    return Err(finished());
                }
                let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                    .map_err(|_| status(Code::INVALID_ARGUMENT, "no such signal"))?;
                crate::container::signal_pid(e.process.pid(), sig).map_err(|_| finished())?;
            }
            None => {
                if c.init.phase() == Phase::Stopped {
                    return Err(finished());
                }
                // Signalled here where the shim can (no runc process); runc otherwise.
                match c.signal(req.signal, req.all) {
                    Ok(()) => return Ok(Empty::new()),
                    Err(e) => log::debug!("{}: signal {} through runc: {e}", c.id, req.signal),
                }
                let sig = req.signal.to_string();
                let mut args = vec!["kill"];
                if req.all {
                    args.push("--all");
                }
                args.extend([c.id.as_str(), sig.as_str()]);
                if let Err(e) = c.runc.run(&c.bundle, &args, None).await {
                    // It may have ended while the runtime looked for it.
                    if c.init.phase() == Phase::Stopped {
                        return Err(finished());
                    }
                    return Err(failed(e));
                }
            }
        }
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: api::ExecProcessRequest) -> TtrpcResult<Empty> {
        let c = self.get(&req.id)?;
        // stdin is not served: the process reads /dev/null (ctr passes a FIFO all the same).
        if req.terminal {
            return Err(status(Code::INVALID_ARGUMENT, "a terminal is not served"));
        }
        if c.init.phase() != Phase::Running {
            return Err(status(Code::FAILED_PRECONDITION, "the task is not running"));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        let exec = Arc::new(Exec {
            spec,
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            process: Process::default(),
        });
        {
            let mut execs = c.execs.lock().unwrap_or_else(|p| p.into_inner());
            if execs.contains_key(&req.exec_id) {
                return Err(status(
                    Code::ALREADY_EXISTS,
                    format!("exec {} exists", req.exec_id),
                ));
            }
            execs.insert(req.exec_id.clone(), exec);
        }
        let ev = TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(ev))
            .await;
        Ok(Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let (c, exec) = self.process(&req.id, &req.exec_id)?;
        let exit = match &exec {
            Some(e) => e.process.wait().await,
            None => c.init.wait().await,
        };
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.at).into(),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let (c, exec) = self.process(&req.id, &req.exec_id)?;
        let (p, stdout, stderr) = match &exec {
            Some(e) => (&e.process, e.stdout.clone(), e.stderr.clone()),
            None => (&c.init, c.stdout.clone(), c.stderr.clone()),
        };
        let exit = p.exit();
        Ok(api::StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid(),
            status: phase_status(p.phase()).into(),
            stdout,
            stderr,
            exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
            exited_at: exit.map(|e| e.at).into(),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let (c, exec) = self.process(&req.id, &req.exec_id)?;
        if let Some(e) = exec {
            if e.process.phase() == Phase::Running {
                return Err(status(Code::FAILED_PRECONDITION, "the exec is running"));
            }
            c.execs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.exec_id);
            let exit = e.process.exit();
            return Ok(api::DeleteResponse {
                pid: e.process.pid(),
                exit_status: exit.as_ref().map(|e| e.status).unwrap_or(0),
                exited_at: exit.map(|e| e.at).into(),
                ..Default::default()
            });
        }
        let phase = c.init.phase();
        if phase == Phase::Running {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("task {} is running", c.id),
            ));
        }
        c.destroy(phase == Phase::Created).await.map_err(failed)?;
        self.remove(&c.id);
        let exit = c.init.exit();
        let (exit_status, exited_at) = match exit {
            Some(e) => (e.status, e.at),
            None => (137, crate::process::now()),
        };
        let ev = TaskDelete {
            container_id: c.id.clone(),
            pid: c.init.pid(),
            exit_status,
            exited_at: Some(exited_at.clone()).into(),
            ..Default::default()
        };
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(ev))
            .await;
        Ok(api::DeleteResponse {
            pid: c.init.pid(),
            exit_status,
            exited_at: Some(exited_at).into(),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let c = self.get(&req.id)?;
        let mut pids = vec![c.init.pid()];
        pids.extend(
            c.execs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .values()
                .filter(|e| e.process.phase() == Phase::Running)
                .map(|e| e.process.pid()),
        );
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let task_pid = self.get(&req.id).map(|c| c.init.pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<Empty> {
        // A shim of a group serves its other containers until the last is deleted.
        if self.is_empty() {
            self.shut_down();
        }
        Ok(Empty::new())
    }
}
