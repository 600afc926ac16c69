//! The running life of an Instance's task: probes, usage samples and status while it runs,
//! and what a stop (an exit, a failed start, a probe's verdict) records: the restart after
//! `restartInterval`, or `failed` when the start burst is spent.

use aos_api::{InstanceSpec, InstanceState, InstanceStatus, InstanceUsage, LastExit, Object};
use aos_containerd::TaskState;
use aos_reconcile::Action;
use aos_store::Api;
use chrono::{DateTime, Utc};

use crate::plan::Plan;
use crate::reconciler::{cond, until, InstanceReconciler};
use crate::InstanceError;

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| dir_size(&e.path()))
        .sum()
}

impl InstanceReconciler {
    pub(crate) fn next_look(&self, plan: &Plan, now: DateTime<Utc>) -> Action {
        let mut d = self.env.defaults.usage_interval;
        if let Some(t) = plan.next_env_expiry {
            d = d.min(until(t, now));
        }
        Action::Requeue(d)
    }

    /// Records a stopped task (an exit, a failed start or a probe's verdict) and schedules the
    /// restart, or fails the instance when the burst is spent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_stop(
        &self,
        obj: &Object<InstanceSpec>,
        plan: &Plan,
        api: &Api<InstanceSpec>,
        exit_code: Option<i32>,
        reason: &str,
        message: &str,
        start: impl Fn(&InstanceStatus) -> Option<(DateTime<Utc>, u32)> + Send + Sync,
    ) -> Result<Action, InstanceError> {
        let now = Utc::now();
        let p = &plan.policy;
        let generation = obj.metadata.generation;
        let restart_at = now + chrono::Duration::from_std(p.restart_interval).unwrap_or_default();
        let mut exhausted = false;
        api.update_status(obj.name(), |s| {
            // The window as of the latest status, with this attempt counted when it is one.
            let (w, n) = start(s).unwrap_or((s.window_start.unwrap_or(now), s.window_starts));
            exhausted = p.exhausted(Some(w), n, now);
            s.last_exit = Some(LastExit {
                exit_code,
                reason: reason.to_string(),
                at: now,
            });
            s.pid = None;
            s.window_start = Some(w);
            s.window_starts = n;
            cond(s, "Ready", false, reason, message, now);
            if exhausted {
                s.state = InstanceState::Failed;
                s.failed_generation = generation;
                s.restart_at = None;
                let m = format!(
                    "{n} starts within {} s; last: {reason} {message}",
                    p.start_interval.as_secs()
                );
                cond(s, "Running", false, "CrashLoop", m.trim(), now);
            } else {
                s.state = InstanceState::Activating;
                s.restart_at = Some(restart_at);
                s.restarts += 1;
                cond(s, "Running", false, "Restarting", message, now);
            }
        })
        .await?;
        tracing::info!(
            instance = obj.name(),
            ?exit_code,
            reason,
            exhausted,
            "task stopped"
        );
        Ok(if exhausted {
            Action::AwaitChange
        } else {
            Action::Requeue(p.restart_interval)
        })
    }

    /// A task that runs as planned: probes, usage and status.
    pub(crate) async fn running(
        &self,
        obj: &Object<InstanceSpec>,
        plan: Plan,
        t: TaskState,
        api: &Api<InstanceSpec>,
    ) -> Result<Action, InstanceError> {
        let env = &self.env;
        let name = obj.name();
        let now = Utc::now();
        let mut ready = (true, "Running".to_string(), String::new());
        if let Some(probes) = &obj.spec.probes {
            let target = crate::probes::Target {
                host: obj.status.ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
                // Isolated instances are probed from inside their namespace.
                netns: (plan.netns == crate::spec::NetNs::Own)
                    .then(|| format!("/proc/{}/ns/net", t.pid).into()),
                uid: plan.uid,
                gid: plan.gid,
                env: plan.env.clone(),
            };
            // New probes for a new task or a change of the probes.
            let key = format!(
                "{}:{}:{}",
                plan.hash,
                t.pid,
                serde_json::to_string(probes).unwrap_or_default()
            );
            let st = env.probes.ensure(name, &key, probes, target);
            if let Some(why) = st.failed {
                env.stop(name, plan.policy.stop_grace).await?;
                let reason = if why.starts_with("startup") {
                    "StartupProbeFailed"
                } else {
                    "LivenessProbeFailed"
                };
                return self
                    .record_stop(obj, &plan, api, None, reason, &why, |_| None)
                    .await;
            }
            ready = match (st.started, st.ready) {
                (true, true) => (true, "ProbesPassed".into(), String::new()),
                (false, _) => (
                    false,
                    "StartupPending".into(),
                    "the startup probe has not passed yet".into(),
                ),
                (true, false) => (false, "ReadinessFailed".into(), st.message.clone()),
            };
        }
        let usage = self.usage(obj, &plan, now);
        let version = obj.spec.version.clone();
        let layer_names: Vec<String> = plan.layers.iter().map(|(n, _, _)| n.clone()).collect();
        // A task adopted after aosd died between its start and the status write: what that
        // write would have said is filled in (the address from the network, which keeps it).
        let mut ip = obj.status.ip.clone();
        if let (None, Some(n), Some(nets)) = (&ip, &obj.spec.network, &env.networks) {
            let shaping = crate::network::Shaping {
                upload: plan.quotas.upload_speed,
                download: plan.quotas.download_speed,
            };
            ip = Some(nets.attach(name, &n.network_id, shaping).await?.ip);
        }
        api.update_status(name, |s| {
            s.state = InstanceState::Active;
            s.ip = ip.clone();
            s.started_at = s.started_at.or(Some(now));
            if s.window_start.is_none() {
                s.window_start = Some(now);
                s.window_starts = s.window_starts.max(1);
            }
            s.pid = Some(t.pid);
            s.running_version = Some(version.clone());
            s.restart_at = None;
            s.layers = layer_names.clone();
            s.env = plan.env_status.clone();
            cond(s, "Running", true, "Started", "", now);
            cond(s, "ItemReady", true, "Ready", "", now);
            cond(s, "Ready", ready.0, &ready.1, &ready.2, now);
            if let Some(u) = &usage {
                for (t, used, limit) in [
                    ("StateLimitExceeded", u.state_bytes, plan.quotas.state_limit),
                    (
                        "StorageLimitExceeded",
                        u.storage_bytes,
                        plan.quotas.storage_limit,
                    ),
                    ("UploadLimitExceeded", u.tx_bytes, plan.quotas.upload_limit),
                    (
                        "DownloadLimitExceeded",
                        u.rx_bytes,
                        plan.quotas.download_limit,
                    ),
                ] {
                    if let Some(limit) = limit {
                        let over = used > limit;
                        let msg = format!("{used} bytes used of {limit}");
                        cond(
                            s,
                            t,
                            over,
                            if over { "OverLimit" } else { "WithinLimit" },
                            &msg,
                            now,
                        );
                    }
                }
                s.usage = Some(u.clone());
            }
        })
        .await?;
        Ok(self.next_look(&plan, now))
    }

    /// A new usage sample when the last one is older than the usage interval.
    fn usage(
        &self,
        obj: &Object<InstanceSpec>,
        plan: &Plan,
        now: DateTime<Utc>,
    ) -> Option<InstanceUsage> {
        let env = &self.env;
        let prev = obj.status.usage.as_ref();
        let interval = chrono::Duration::from_std(env.defaults.usage_interval).unwrap_or_default();
        if prev.is_some_and(|p| now - p.updated_at < interval - chrono::Duration::milliseconds(500))
        {
            return None;
        }
        let cpu = env.cgroups.cpu_time_ns(&plan.cgroups_path).unwrap_or(0);
        let cpu_percent = match prev {
            Some(p) if cpu >= p.cpu_time_ns => {
                let wall = (now - p.updated_at).num_nanoseconds().unwrap_or(0).max(1) as f64;
                ((cpu - p.cpu_time_ns) as f64 / wall * 1000.0).round() / 10.0
            }
            _ => 0.0,
        };
        let per_core = plan.node_dmips / plan.cores.max(1);
        let dir = env.data_dir(obj.name());
        let (rx_bytes, tx_bytes) = env
            .networks
            .as_ref()
            .filter(|_| obj.spec.network.is_some())
            .and_then(|n| n.counters(obj.name()))
            .unwrap_or_default();
        Some(InstanceUsage {
            rx_bytes,
            tx_bytes,
            cpu_percent,
            cpu_dmips: (cpu_percent / 100.0 * per_core as f64) as u64,
            ram_bytes: env.cgroups.memory_bytes(&plan.cgroups_path).unwrap_or(0),
            state_bytes: dir_size(&dir.join("state.dat")),
            storage_bytes: dir_size(&dir.join("storage")),
            updated_at: now,
            cpu_time_ns: cpu,
        })
    }
}
