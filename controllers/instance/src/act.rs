//! Carries out the step [`crate::plan`] chose, through the ports (containers, networks, the
//! host, the probes, the uid pool), and says what came of it; it writes no status.

use aos_api::InstanceSpec;
use aos_containerd::{TaskIo, TaskSpec};
use aos_store::Api;
use tracing::Instrument;

use crate::host::Preparation;
use crate::network::Shaping;
use crate::observe::Observed;
use crate::plan::Step;
use crate::probes::ProbeState;
use crate::recipe::Recipe;
use crate::{InstanceEnv, InstanceError, CONFIG_LABEL, INSTANCE_LABEL, NETWORK_LABEL};

/// What a step came to.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing was done.
    Nothing,
    IdsAssigned {
        uid: u32,
    },
    /// A task was started.
    Started {
        pid: u32,
        ip: Option<String>,
    },
    /// The runtime refused to start the task: it counts as a start that stopped.
    StartFailed {
        reason: &'static str,
        message: String,
    },
    /// What the task needs could not be made (data, network, rootfs): nothing runs.
    NotStarted(InstanceError),
    /// The task was stopped and removed.
    Stopped,
    /// The task runs: what its probes found so far, and its address.
    Running {
        probes: Option<ProbeState>,
        ip: Option<String>,
    },
}

fn shaping(r: &Recipe) -> Shaping {
    Shaping {
        upload: r.quotas.upload_speed,
        download: r.quotas.download_speed,
    }
}

/// Runs `step` for `o`; `recipe` is there for every step that needs it.
pub async fn act(
    env: &InstanceEnv,
    api: &Api<InstanceSpec>,
    o: &Observed,
    recipe: Option<&Recipe>,
    step: &Step,
) -> Result<Outcome, InstanceError> {
    let obj = &o.obj;
    let name = obj.name();
    let need = || {
        recipe.ok_or_else(|| InstanceError::Config("no recipe for a step that needs one".into()))
    };
    Ok(match step {
        Step::Unserved
        | Step::RuntimeDown
        | Step::WaitForItem { .. }
        | Step::Blocked { .. }
        | Step::Hold
        | Step::WaitRestart(_) => Outcome::Nothing,
        Step::AssignIds => Outcome::IdsAssigned {
            uid: env.uids.allocate(api).await?,
        },
        Step::Clear => {
            env.containers.remove(name).await?;
            Outcome::Nothing
        }
        Step::Keep { probes } => {
            let probes = match (probes, &obj.spec.probes) {
                (Some((key, target)), Some(p)) => {
                    Some(env.probes.ensure(name, key, p, target.clone()))
                }
                _ => None,
            };
            // A task adopted after aosd died between its start and the status write: what that
            // write would have said is filled in (the address from the network, which keeps it).
            let mut ip = obj.status.ip.clone();
            if let (None, Some(n), Some(nets)) = (&ip, &obj.spec.network, &env.networks) {
                ip = Some(nets.attach(name, &n.network_id, shaping(need()?)).await?.ip);
            }
            Outcome::Running { probes, ip }
        }
        Step::ProbeFailed { .. } | Step::Offline { running: true } => {
            env.stop(name, need()?.policy.stop_grace).await?;
            Outcome::Stopped
        }
        Step::Offline { running: false } => Outcome::Nothing,
        Step::RecordExit { .. } => {
            env.containers.remove(name).await?;
            env.probes.stop(name);
            env.oom_clear(name);
            Outcome::Stopped
        }
        Step::Start { replace, .. } => {
            let r = need()?;
            if *replace {
                tracing::info!(version = %obj.spec.version, "the instance changed: replacing its task");
                env.stop(name, r.policy.stop_grace).await?;
            }
            start(env, o, r)
                .instrument(tracing::info_span!("start"))
                .await
        }
    })
}

/// Makes what the task needs and starts it.
async fn start(env: &InstanceEnv, o: &Observed, r: &Recipe) -> Outcome {
    let obj = &o.obj;
    let name = obj.name();
    let mut ip = None;
    if let (Some(n), Some(nets)) = (&obj.spec.network, &env.networks) {
        match nets.attach(name, &n.network_id, shaping(r)).await {
            Ok(a) => ip = Some(a.ip),
            Err(e) => return Outcome::NotStarted(e.into()),
        }
    }
    // The address is the instance's for good (kept by its network): it goes into /etc/hosts
    // without being part of what the task is compared by.
    let mut top = r.top.clone();
    if let Some(ip) = &ip {
        top.hosts.push(format!("{ip}\t{}", top.hostname));
    }
    let layers: Vec<_> = r
        .layers
        .iter()
        .map(|(_, diff, l)| (diff.clone(), l.clone()))
        .collect();
    let mount = match env.host.prepare(&Preparation {
        name,
        uid: r.uid,
        gid: r.gid,
        volume: r.volume,
        layers: &layers,
        host_base: r.host_base,
        top: &top,
    }) {
        Ok(m) => m,
        Err(e) => return Outcome::NotStarted(e),
    };
    let task = TaskSpec {
        id: name.to_string(),
        spec: r.spec.clone(),
        rootfs: vec![mount],
        io: TaskIo::Logger {
            binary: env.logs.logger.clone(),
            args: vec![
                ("--dir".into(), r.paths.log_dir.display().to_string()),
                ("--max-size".into(), env.logs.max_size.to_string()),
                ("--max-files".into(), env.logs.max_files.to_string()),
            ],
        },
        labels: [
            (INSTANCE_LABEL.to_string(), name.to_string()),
            (CONFIG_LABEL.to_string(), r.hash.clone()),
        ]
        .into_iter()
        .chain(
            obj.spec
                .network
                .as_ref()
                .map(|n| (NETWORK_LABEL.to_string(), n.network_id.clone())),
        )
        .collect(),
    };
    env.oom_clear(name);
    match env.containers.run(&task).await {
        Ok(pid) => {
            tracing::info!(pid, version = %obj.spec.version, "task started");
            Outcome::Started { pid, ip }
        }
        Err(e) => {
            tracing::warn!(error = %e, "task did not start");
            Outcome::StartFailed {
                reason: e.reason(),
                message: e.to_string(),
            }
        }
    }
}
