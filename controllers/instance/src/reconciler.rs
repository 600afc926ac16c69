//! The reconcile of one Instance: level-triggered on the Instance, its Item, the task's
//! events and the probes. Each pass looks at what runs and does the one next step: adopt,
//! replace, record an exit and schedule the restart, fail after the burst, or start.

use std::sync::Arc;
use std::time::Duration;

use aos_api::{
    ConditionStatus, InstanceSpec, InstanceState, InstanceStatus, ItemPhase, ItemSpec, Object,
    RuntimeType,
};
use aos_containerd::{TaskIo, TaskSpec};
use aos_reconcile::{Action, Context, Reason, Reconciler};
use aos_store::{Api, Backend};
use chrono::{DateTime, Utc};

use crate::plan::{plan, Plan};
use crate::{rootfs, InstanceEnv, InstanceError, CONFIG_LABEL, FINALIZER, INSTANCE_LABEL};

pub struct InstanceReconciler {
    pub(crate) env: Arc<InstanceEnv>,
}

impl InstanceReconciler {
    pub fn new(env: Arc<InstanceEnv>) -> Self {
        InstanceReconciler { env }
    }
}

pub(crate) fn cond(
    s: &mut InstanceStatus,
    t: &str,
    ok: bool,
    reason: &str,
    msg: &str,
    now: DateTime<Utc>,
) {
    let st = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    s.common.set_condition(t, st, reason, msg, now);
}

pub(crate) fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    at.signed_duration_since(now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_millis(10))
}

async fn find_item(
    backend: &Arc<dyn Backend>,
    s: &InstanceSpec,
) -> Result<Option<Object<ItemSpec>>, InstanceError> {
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    Ok(items.into_iter().find(|i| {
        i.spec.item_id == s.item_id
            && i.spec.version == s.version
            && i.metadata.deletion_timestamp.is_none()
    }))
}

impl InstanceReconciler {
    /// The instance's uid and gid, allocated once and kept in its status.
    async fn ids(
        &self,
        obj: &Object<InstanceSpec>,
        api: &Api<InstanceSpec>,
    ) -> Result<(u32, u32), InstanceError> {
        if let Some(uid) = obj.status.uid {
            self.env.uids.claim(uid);
            return Ok((uid, obj.status.gid.unwrap_or(uid)));
        }
        let uid = self.env.uids.allocate(api).await?;
        let s = &obj.spec;
        let id = aos_api::ids::instance_id(&s.item_id, &s.subject_id, s.index).to_string();
        api.update_status(obj.name(), |st| {
            st.uid = Some(uid);
            st.gid = Some(uid);
            st.instance_id = id.clone();
        })
        .await?;
        Ok((uid, uid))
    }

    /// The per-instance files that outlive tasks: `state.dat` and `storage/` in the instance's
    /// volume (bounded by its limits), and `logs/`.
    fn prepare_data(&self, name: &str, plan: &Plan) -> Result<(), InstanceError> {
        use std::os::unix::fs::PermissionsExt;
        let (uid, gid) = (plan.uid, plan.gid);
        let dir = self.env.instance_dir(name);
        let io = |what: String| move |source| InstanceError::Io { what, source };
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs)
            .map_err(io(format!("failed to create {}", logs.display())))?;
        let q = &plan.quotas;
        let limit =
            q.state_limit.unwrap_or(0) + q.storage_limit.unwrap_or(self.env.defaults.volume_size);
        let data = crate::volume::prepare(&dir, Some(limit).filter(|l| *l > 0))?;
        let storage = data.join("storage");
        std::fs::create_dir_all(&storage)
            .map_err(io(format!("failed to create {}", storage.display())))?;
        let state = data.join("state.dat");
        if !state.exists() {
            std::fs::write(&state, b"")
                .map_err(io(format!("failed to create {}", state.display())))?;
        }
        for (p, mode) in [(state, 0o600), (storage, 0o700)] {
            std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)))
                .map_err(io(format!("failed to hand {} to uid {uid}", p.display())))?;
        }
        Ok(())
    }

    async fn start(
        &self,
        obj: &Object<InstanceSpec>,
        plan: Plan,
        api: &Api<InstanceSpec>,
        fresh_window: bool,
    ) -> Result<Action, InstanceError> {
        let env = &self.env;
        let name = obj.name();
        let now = Utc::now();
        self.prepare_data(name, &plan)?;
        let mut ip = None;
        if let (Some(n), Some(nets)) = (&obj.spec.network, &env.networks) {
            let a = nets
                .attach(
                    name,
                    &n.network_id,
                    crate::network::Shaping {
                        upload: plan.quotas.upload_speed,
                        download: plan.quotas.download_speed,
                    },
                )
                .await
                .map_err(InstanceError::Network)?;
            ip = Some(a.ip);
        }
        for (lname, diff, _) in &plan.layers {
            env.layers
                .mount(diff)
                .map_err(|e| InstanceError::Rootfs(format!("layer {lname}: {e}")))?;
        }
        let image_layers: Vec<_> = plan.layers.iter().map(|(_, _, l)| l.clone()).collect();
        let base = plan
            .host_base
            .then_some((env.host_root.as_path(), env.host_binds.as_slice()));
        // The address is the instance's for good (kept by its network): it goes into
        // /etc/hosts without being part of what the task is compared by.
        let mut top = plan.top.clone();
        if let Some(ip) = &ip {
            top.hosts.push(format!("{ip}\t{}", top.hostname));
        }
        let mount = rootfs::prepare(&env.run_dirs(name), &image_layers, base, &top)?;
        let task = TaskSpec {
            id: name.to_string(),
            spec: plan.spec.clone(),
            rootfs: vec![mount],
            io: TaskIo::Logger {
                binary: env.logs.logger.clone(),
                args: vec![
                    ("--dir".into(), env.log_dir(name).display().to_string()),
                    ("--max-size".into(), env.logs.max_size.to_string()),
                    ("--max-files".into(), env.logs.max_files.to_string()),
                ],
            },
            labels: [
                (INSTANCE_LABEL.to_string(), name.to_string()),
                (CONFIG_LABEL.to_string(), plan.hash.clone()),
            ]
            .into_iter()
            .chain(
                obj.spec
                    .network
                    .as_ref()
                    .map(|n| (crate::NETWORK_LABEL.to_string(), n.network_id.clone())),
            )
            .collect(),
        };
        let policy = plan.policy.clone();
        let window = move |s: &InstanceStatus| {
            if fresh_window {
                policy.record_start(None, 0, now)
            } else {
                policy.record_start(s.window_start, s.window_starts, now)
            }
        };
        env.oom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let layer_names: Vec<String> = plan.layers.iter().map(|(n, _, _)| n.clone()).collect();
        let version = obj.spec.version.clone();
        let has_probes = obj.spec.probes.is_some();
        match env.containers.run(&task).await {
            Ok(pid) => {
                tracing::info!(instance = name, pid, version = %version, "task started");
                api.update_status(name, |s| {
                    s.state = InstanceState::Active;
                    s.pid = Some(pid);
                    s.started_at = Some(now);
                    s.running_version = Some(version.clone());
                    s.ip = ip.clone();
                    let (w, n) = window(s);
                    s.window_start = Some(w);
                    s.window_starts = n;
                    s.restart_at = None;
                    s.failed_generation = 0;
                    s.layers = layer_names.clone();
                    s.env = plan.env_status.clone();
                    s.usage = None;
                    cond(s, "Running", true, "Started", "", now);
                    cond(s, "ItemReady", true, "Ready", "", now);
                    if has_probes {
                        cond(
                            s,
                            "Ready",
                            false,
                            "ProbesPending",
                            "waiting for the probes",
                            now,
                        );
                    } else {
                        cond(s, "Ready", true, "Running", "", now);
                    }
                })
                .await?;
                Ok(self.next_look(&plan, now))
            }
            Err(e) => {
                tracing::warn!(instance = name, error = %e, "task did not start");
                let msg = e.to_string();
                self.record_stop(
                    obj,
                    &plan,
                    api,
                    None,
                    e.reason(),
                    &msg,
                    move |s: &InstanceStatus| Some(window(s)),
                )
                .await
            }
        }
    }
}

impl Reconciler for InstanceReconciler {
    type Kind = InstanceSpec;
    type Error = InstanceError;

    fn finalizer(&self) -> Option<&'static str> {
        Some(FINALIZER)
    }

    async fn apply(
        &self,
        obj: Arc<Object<InstanceSpec>>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        if obj.spec.runtime != RuntimeType::Container {
            // Nothing on this node runs other runtimes' Instances: say so instead of waiting.
            let msg = format!(
                "this node runs no {} instances (it serves: container)",
                obj.spec.runtime.as_str()
            );
            ctx.api
                .update_status(obj.name(), |s| {
                    s.state = InstanceState::Failed;
                    cond(s, "Ready", false, "RuntimeUnavailable", &msg, Utc::now());
                })
                .await?;
            return Ok(Action::AwaitChange);
        }
        let env = &self.env;
        let api = &ctx.api;
        // The cache may not hold our own last status write yet: decide on the latest.
        let obj = match api.get_opt(obj.name()).await? {
            Some(latest) => Arc::new(latest),
            None => return Ok(Action::AwaitChange),
        };
        let name = obj.name();
        let now = Utc::now();
        let ids = self.ids(&obj, api).await?;
        let item = find_item(&ctx.backend, &obj.spec).await?;
        let info = match env.containers.inspect(name).await {
            Ok(i) => i,
            Err(e) if e.is_unavailable() => {
                // Nothing is known of the task while containerd is away: not Ready, not failed.
                let msg = e.to_string();
                api.update_status(name, |s| {
                    s.common.set_condition(
                        "Ready",
                        ConditionStatus::Unknown,
                        "RuntimeUnavailable",
                        &msg,
                        now,
                    );
                })
                .await?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        let running = info.as_ref().and_then(|i| i.task).filter(|t| t.running);
        let Some(item) = item.filter(|i| i.status.phase == ItemPhase::Ready) else {
            let msg = format!(
                "waiting for Item {} version {} to be Ready{}",
                obj.spec.item_id,
                obj.spec.version,
                match &obj.status.running_version {
                    Some(v) if running.is_some() => format!("; version {v} keeps running"),
                    _ => String::new(),
                }
            );
            api.update_status(name, |s| {
                cond(s, "ItemReady", false, "WaitingForItem", &msg, now);
                if running.is_none() && s.state != InstanceState::Failed {
                    s.state = InstanceState::Activating;
                }
            })
            .await?;
            return Ok(Action::AwaitChange);
        };
        let plan = match plan(env, &ctx.backend, &obj, &item, ids, now).await {
            Ok(p) => p,
            Err(e) => {
                let msg = e.to_string();
                api.update_status(name, |s| {
                    cond(s, "Running", running.is_some(), e.reason(), &msg, now);
                })
                .await?;
                return Err(e);
            }
        };
        let generation = obj.metadata.generation;
        let mut fresh_window = false;
        if let Some(i) = &info {
            match i.task {
                Some(t) if t.running => {
                    if i.labels.get(CONFIG_LABEL) == Some(&plan.hash) {
                        return self.running(&obj, plan, t, api).await;
                    }
                    tracing::info!(instance = name, version = %obj.spec.version, "the instance changed: replacing its task");
                    env.stop(name, plan.policy.stop_grace).await?;
                    fresh_window = true;
                }
                Some(t) => {
                    // The cgroup lives until the task is deleted: ask it before removing.
                    let killed = env.cgroups.oom_kills(&plan.cgroups_path) > 0;
                    env.containers.remove(name).await?;
                    env.probes.stop(name);
                    let code = (t.exit_status & 0xff) as i32;
                    let flagged = env
                        .oom
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(name);
                    let oom = killed || flagged;
                    let reason = if oom {
                        "OOMKilled"
                    } else if t.exit_status == 0 {
                        "Completed"
                    } else if t.exit_status >= 128 {
                        "Killed"
                    } else {
                        "Error"
                    };
                    let msg = format!("exited with status {}", t.exit_status);
                    return self
                        .record_stop(&obj, &plan, api, Some(code), reason, &msg, |_| None)
                        .await;
                }
                None => env.containers.remove(name).await?,
            }
        }
        if !fresh_window {
            let st = &obj.status;
            if st.state == InstanceState::Failed && st.failed_generation == generation {
                return Ok(Action::AwaitChange);
            }
            if st.state == InstanceState::Failed {
                fresh_window = true;
            } else if let Some(at) = st.restart_at.filter(|at| *at > now) {
                return Ok(Action::Requeue(until(at, now)));
            }
        }
        self.start(&obj, plan, api, fresh_window).await
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<InstanceSpec>>,
        ctx: &Context<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        if obj.spec.runtime != RuntimeType::Container {
            return Ok(Action::AwaitChange);
        }
        let env = &self.env;
        let name = obj.name();
        let _ = ctx
            .api
            .update_status(name, |s| s.state = InstanceState::Inactive)
            .await;
        let grace = obj
            .spec
            .restart_policy
            .as_ref()
            .and_then(|p| p.stop_grace)
            .map(|g| g.0)
            .unwrap_or(env.defaults.stop_grace);
        env.stop(name, grace).await?;
        if let (Some(n), Some(nets)) = (&obj.spec.network, &env.networks) {
            nets.detach(name, &n.network_id)
                .await
                .map_err(InstanceError::Network)?;
            // Tells the network side (which follows instance addresses) that it has left.
            let _ = ctx.api.update_status(name, |s| s.ip = None).await;
        }
        let io = |what: String| move |source| InstanceError::Io { what, source };
        crate::volume::release(&env.instance_dir(name))?;
        for dir in [env.run_dirs(name).root, env.instance_dir(name)] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(format!("failed to remove {}", dir.display()))(e)),
            }
        }
        if let Some(uid) = obj.status.uid {
            env.uids.release(uid);
        }
        // The last instance leaves no empty parents behind (both calls keep what is in use).
        env.cgroups.remove_if_empty(&env.cgroup_parent);
        env.containers.release_idle().await?;
        tracing::info!(instance = name, "instance removed");
        Ok(Action::AwaitChange)
    }
}
