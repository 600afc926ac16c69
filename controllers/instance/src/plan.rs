//! What a task of an instance is made of, computed without touching the host: the runtime
//! spec, the layers and the top layer of its rootfs, its policy and environment; and a digest
//! of all of it, kept as a container label, so that a running task is adopted when it matches
//! and replaced when anything that shapes it changed.

use aos_api::{
    EnvState, EnvVarStatus, InstanceSpec, ItemSpec, LayerPhase, LayerSpec, NodeSpec, Object,
};
use aos_store::{Api, Backend};
use chrono::{DateTime, Utc};
use sha2::Digest;
use std::sync::Arc;

use crate::config::limits;
use crate::policy::Policy;
use crate::rootfs::TopLayer;
use crate::spec::{self, Bind, NetNs, SpecInput};
use crate::{InstanceEnv, InstanceError};
use aos_image::stack::StackLayer;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct Plan {
    pub spec: oci_spec::runtime::Spec,
    /// Layer resource names and their stack entries, lowest first.
    pub layers: Vec<(String, String, StackLayer)>,
    pub host_base: bool,
    pub top: TopLayer,
    pub policy: Policy,
    pub env_status: Vec<EnvVarStatus>,
    /// When an environment override expires next (the task is then re-made without it).
    pub next_env_expiry: Option<DateTime<Utc>>,
    pub env: Vec<String>,
    pub uid: u32,
    pub gid: u32,
    pub cgroups_path: String,
    pub quotas: crate::config::Quotas,
    pub netns: NetNs,
    /// The node's DMIPS and cores, for usage in DMIPS.
    pub node_dmips: u64,
    pub cores: u64,
    pub hash: String,
}

/// Sets `NAME=value` in `env`, replacing an earlier value of the same name.
fn set_env(env: &mut Vec<String>, kv: String) {
    let name = kv.split('=').next().unwrap_or("").to_string();
    env.retain(|e| e.split('=').next() != Some(name.as_str()));
    env.push(kv);
}

/// `/etc/resolv.conf` of an instance on `network`: the network's resolver on its gateway
/// (which knows the instances' names and forwards the rest), or the network's own servers.
async fn dns_servers(
    backend: &Arc<dyn Backend>,
    network: &str,
) -> Result<Option<String>, InstanceError> {
    // Not before the network is up: what the instance is made with depends on it.
    let net = Api::<aos_api::NetworkSpec>::new(backend.clone())
        .get_opt(network)
        .await?
        .filter(|n| n.status.bridge.is_some() && n.metadata.deletion_timestamp.is_none())
        .ok_or_else(|| {
            InstanceError::Network(crate::network::NetworkError {
                reason: "NetworkNotReady",
                message: format!("network {network} is not ready"),
            })
        })?;
    // Always the network's resolver: a resolver that could not listen yet is retried by the
    // Network controller, and what an instance is made with must not flip with it.
    let servers: Vec<String> = match &net.status.gateway {
        Some(gw) => vec![gw.clone()],
        None => net.spec.dns_servers.clone(),
    };
    Ok(Some(servers)
        .filter(|d| !d.is_empty())
        .map(|d| d.iter().map(|s| format!("nameserver {s}\n")).collect()))
}

pub async fn plan(
    env: &InstanceEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<InstanceSpec>,
    item: &Object<ItemSpec>,
    (uid, gid): (u32, u32),
    now: DateTime<Utc>,
) -> Result<Plan, InstanceError> {
    let name = obj.name();
    let s = &obj.spec;
    let run = item.status.config.clone().ok_or_else(|| {
        InstanceError::Config(format!("item {} has no config recorded yet", item.name()))
    })?;
    let item_run = run.item();

    let layer_api = Api::<LayerSpec>::new(backend.clone());
    let mut layers = Vec::new();
    let mut indexes = Vec::new();
    for lname in &item.status.layers {
        let l = layer_api
            .get_opt(lname)
            .await?
            .filter(|l| l.status.phase == LayerPhase::Ready)
            .ok_or_else(|| InstanceError::LayerMissing(lname.clone()))?;
        let diff_id = l
            .spec
            .diff_id
            .clone()
            .ok_or_else(|| InstanceError::LayerMissing(lname.clone()))?;
        let record = env
            .layers
            .record(&diff_id)
            .ok_or_else(|| InstanceError::LayerMissing(lname.clone()))?;
        let root = env
            .layers
            .mount_path(&diff_id)
            .map_err(|e| InstanceError::Rootfs(e.to_string()))?;
        indexes.push(record.index);
        layers.push((
            lname.clone(),
            diff_id,
            StackLayer {
                root,
                implicit_dirs: record.implicit_dirs.into_iter().collect(),
            },
        ));
    }
    aos_image::stack::check_stack(&indexes.iter().collect::<Vec<_>>())
        .map_err(InstanceError::Rootfs)?;

    let (nodes, _) = Api::<NodeSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let (dmips, cores) = nodes
        .first()
        .map(|n| (n.status.dmips, n.status.cpus))
        .unwrap_or((0, 1));
    let limits = limits(&item_run, dmips, cores, env.defaults.tmp_size);

    let granted = crate::resources::grant(&env.resources, &item_run.resources)?;

    let instance_id = aos_api::ids::instance_id(&s.item_id, &s.subject_id, s.index);
    let mut vars = vec![
        format!("AOS_ITEM_ID={}", s.item_id),
        format!("AOS_SUBJECT_ID={}", s.subject_id),
        format!("AOS_INSTANCE_INDEX={}", s.index),
        format!("AOS_INSTANCE_ID={instance_id}"),
    ];
    let image_env = run.image.env.clone().unwrap_or_default();
    if !image_env.iter().any(|e| e.starts_with("PATH=")) {
        vars.push(DEFAULT_PATH.into());
    }
    for e in image_env {
        set_env(&mut vars, e);
    }
    let mut binds = vec![
        Bind {
            source: env.data_dir(name).join("state.dat"),
            destination: "/state.dat".into(),
            read_only: false,
        },
        Bind {
            source: env.data_dir(name).join("storage"),
            destination: "/storage".into(),
            read_only: false,
        },
    ];
    let mut top = TopLayer {
        hostname: item_run
            .hostname
            .clone()
            .unwrap_or_else(|| name.to_string()),
        resolv_conf: std::fs::read_to_string(&env.resolv_conf).unwrap_or_default(),
        ..TopLayer::default()
    };
    for e in &granted.env {
        set_env(&mut vars, e.clone());
    }
    top.mount_dirs.extend(granted.mount_dirs.iter().cloned());
    top.mount_files.extend(granted.mount_files.iter().cloned());
    top.hosts.extend(granted.hosts.iter().cloned());
    binds.extend(granted.binds.iter().cloned());
    let (devices, groups) = (granted.devices, granted.groups);

    let mut env_status = Vec::new();
    let mut next_env_expiry: Option<DateTime<Utc>> = None;
    for o in &s.env {
        match o.ttl {
            Some(t) if t <= now => env_status.push(EnvVarStatus {
                name: o.name.clone(),
                state: EnvState::Expired,
                message: Some(format!("expired at {}", t.to_rfc3339())),
            }),
            ttl => {
                set_env(&mut vars, format!("{}={}", o.name, o.value));
                if let Some(t) = ttl {
                    next_env_expiry = Some(next_env_expiry.map_or(t, |n| n.min(t)));
                }
                env_status.push(EnvVarStatus {
                    name: o.name.clone(),
                    state: EnvState::Applied,
                    message: None,
                });
            }
        }
    }

    let netns = match (&s.network, &env.networks) {
        (Some(n), Some(nets)) => {
            if let Some(servers) = dns_servers(backend, &n.network_id).await? {
                top.resolv_conf = servers;
            }
            NetNs::Join(nets.netns_path(name).display().to_string())
        }
        (Some(_), None) => {
            return Err(InstanceError::Network(crate::network::NetworkError {
                reason: "NetworkUnavailable",
                message: "this node runs no network controller".into(),
            }))
        }
        (None, _) if item_run.network_mode.as_deref() == Some("host") => {
            if !env.permits.host_network {
                return Err(InstanceError::NotPermitted(
                    "networkMode: host (the node's runtimes.container.allow_host_network is off)"
                        .into(),
                ));
            }
            NetNs::Host
        }
        (None, _) => NetNs::Own,
    };
    if netns == NetNs::Host {
        if let Some(k) = item_run.sysctl.keys().find(|k| k.starts_with("net.")) {
            return Err(InstanceError::Config(format!(
                "sysctl {k} would change the host's network (the instance shares it)"
            )));
        }
    }
    let seccomp = match item_run.seccomp.as_deref() {
        Some("unconfined") if env.permits.unconfined => None,
        Some("unconfined") => {
            return Err(InstanceError::NotPermitted(
                "seccomp: unconfined (the node's runtimes.container.allow_unconfined is off)"
                    .into(),
            ))
        }
        _ => Some(crate::seccomp::default_profile()),
    };
    let cgroups_path = format!("/{}/{}", env.cgroup_parent, name);
    let doc = spec::document(&SpecInput {
        args: run.args(),
        env: vars.clone(),
        cwd: run.image.working_dir.clone().unwrap_or_default(),
        uid,
        gid,
        additional_gids: groups,
        hostname: top.hostname.clone(),
        cgroups_path: cgroups_path.clone(),
        limits,
        binds,
        devices,
        sysctl: item_run.sysctl.clone(),
        netns: netns.clone(),
        seccomp,
    })?;
    let spec = spec::from_document(doc.clone())?;
    let policy = crate::policy::Policy::resolve(
        &env.defaults,
        &item_run.run_parameters,
        s.restart_policy.as_ref(),
    );
    let host_base = run.uses_host_rootfs();
    let mut h = sha2::Sha256::new();
    // The OCI types hold sets and maps (their order changes from run to run): hash our own
    // document instead, built in a fixed order from vectors and sorted maps.
    h.update(serde_json::to_vec(&doc).map_err(|e| InstanceError::Config(e.to_string()))?);
    let hash = hex::encode(h.finalize())[..32].to_string();
    Ok(Plan {
        spec,
        layers,
        host_base,
        top,
        policy,
        env_status,
        next_env_expiry,
        env: vars,
        uid,
        gid,
        cgroups_path,
        quotas: item_run.quotas.clone(),
        netns,
        node_dmips: dmips,
        cores,
        hash,
    })
}
