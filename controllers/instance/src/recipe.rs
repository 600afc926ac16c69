//! What a task of an instance is made of, computed from what was observed without touching
//! the store or the host: the runtime spec, the layers and the top layer of its rootfs, its
//! policy and environment; and a digest of all of it, kept as a container label, so that a
//! running task is adopted when it matches and replaced when anything that shapes it changed.

use std::path::PathBuf;

use aos_api::{EnvState, EnvVarStatus, InstanceSpec, Object};
use aos_image::stack::StackLayer;
use chrono::{DateTime, Utc};
use sha2::Digest;

use crate::config::{limits, RunConfig};
use crate::host::{LayerFacts, Paths};
use crate::network::NetworkError;
use crate::policy::Policy;
use crate::resources::Granted;
use crate::rootfs::TopLayer;
use crate::spec::{self, Bind, NetNs, SpecInput};
use crate::{Defaults, InstanceError, Permits};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A layer of the item, as observed.
#[derive(Clone, Debug)]
pub struct LayerInput {
    /// The Layer resource's name.
    pub name: String,
    /// Its diff id once the Layer is Ready; `None` otherwise.
    pub diff_id: Option<String>,
    /// The layer on this node, if it is there.
    pub facts: Option<LayerFacts>,
}

/// The instance's network, as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetworkInput {
    /// The instance has no `spec.network`.
    None,
    /// The node runs no network controller.
    Unavailable,
    /// The Network is missing, going away or not up yet.
    NotReady(String),
    /// The Network is up: its `resolv.conf` lines (if it names servers) and the namespace the
    /// instance joins.
    Ready {
        resolv_conf: Option<String>,
        netns: PathBuf,
    },
}

/// What a task is made from, as observed in the store and on the host.
#[derive(Debug)]
pub struct Inputs {
    pub item_name: String,
    /// The item's image and item config; `None` until the Item recorded it.
    pub run: Option<RunConfig>,
    pub layers: Vec<LayerInput>,
    /// The node's DMIPS and cores.
    pub node: (u64, u64),
    pub granted: Result<Granted, InstanceError>,
    pub resolv_conf: String,
    pub network: NetworkInput,
    pub paths: Paths,
}

/// What a task of the instance is made of.
pub struct Recipe {
    pub spec: oci_spec::runtime::Spec,
    /// Layer resource names and their diff ids and stack entries, lowest first.
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
    pub quotas: crate::config::Quotas,
    /// Bytes of the volume of state and storage; `None`: plain directories.
    pub volume: Option<u64>,
    /// Where the instance's files are.
    pub paths: Paths,
    pub netns: NetNs,
    /// The node's DMIPS and cores, for usage in DMIPS.
    pub node_dmips: u64,
    pub cores: u64,
    pub hash: String,
    /// How long the instance may run without its cloud (the item's `offlineTTL`).
    pub offline_ttl: Option<std::time::Duration>,
}

/// Sets `NAME=value` in `env`, replacing an earlier value of the same name.
fn set_env(env: &mut Vec<String>, kv: String) {
    let name = kv.split('=').next().unwrap_or("").to_string();
    env.retain(|e| e.split('=').next() != Some(name.as_str()));
    env.push(kv);
}

/// The recipe of a task of `obj` from `inputs`, as uid and gid `ids`, at `now` (expired
/// environment overrides are left out).
pub fn build(
    obj: &Object<InstanceSpec>,
    inputs: Inputs,
    (uid, gid): (u32, u32),
    now: DateTime<Utc>,
    defaults: &Defaults,
    permits: Permits,
) -> Result<Recipe, InstanceError> {
    let name = obj.name();
    let s = &obj.spec;
    let run = inputs.run.ok_or_else(|| {
        InstanceError::Config(format!(
            "item {} has no config recorded yet",
            inputs.item_name
        ))
    })?;
    let item_run = run.item();

    let mut layers = Vec::new();
    let mut indexes = Vec::new();
    for l in inputs.layers {
        let (Some(diff_id), Some(facts)) = (l.diff_id, l.facts) else {
            return Err(InstanceError::LayerMissing(l.name));
        };
        layers.push((l.name, diff_id, facts.stack_layer()));
        indexes.push(facts.index);
    }
    aos_image::stack::check_stack(&indexes.iter().collect::<Vec<_>>())
        .map_err(InstanceError::Rootfs)?;

    let (dmips, cores) = inputs.node;
    let limits = limits(&item_run, dmips, cores, defaults.tmp_size);
    let granted = inputs.granted?;

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
            source: inputs.paths.state_file.clone(),
            destination: "/state.dat".into(),
            read_only: false,
        },
        Bind {
            source: inputs.paths.storage_dir.clone(),
            destination: "/storage".into(),
            read_only: false,
        },
    ];
    let mut top = TopLayer {
        hostname: item_run
            .hostname
            .clone()
            .unwrap_or_else(|| name.to_string()),
        resolv_conf: inputs.resolv_conf,
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

    let netns = match inputs.network {
        NetworkInput::Ready { resolv_conf, netns } => {
            if let Some(servers) = resolv_conf {
                top.resolv_conf = servers;
            }
            NetNs::Join(netns.display().to_string())
        }
        NetworkInput::NotReady(network) => {
            return Err(InstanceError::Network(NetworkError {
                reason: aos_api::condition::reason::NETWORK_NOT_READY,
                message: format!("network {network} is not ready"),
            }))
        }
        NetworkInput::Unavailable => {
            return Err(InstanceError::Network(NetworkError {
                reason: aos_api::condition::reason::NETWORK_UNAVAILABLE,
                message: "this node runs no network controller".into(),
            }))
        }
        NetworkInput::None if item_run.network_mode.as_deref() == Some("host") => {
            if !permits.host_network {
                return Err(InstanceError::NotPermitted(
                    "networkMode: host (the node's runtimes.container.allow_host_network is off)"
                        .into(),
                ));
            }
            NetNs::Host
        }
        NetworkInput::None => NetNs::Own,
    };
    if netns == NetNs::Host {
        if let Some(k) = item_run.sysctl.keys().find(|k| k.starts_with("net.")) {
            return Err(InstanceError::Config(format!(
                "sysctl {k} would change the host's network (the instance shares it)"
            )));
        }
    }
    let seccomp = match item_run.seccomp.as_deref() {
        Some("unconfined") if permits.unconfined => None,
        Some("unconfined") => {
            return Err(InstanceError::NotPermitted(
                "seccomp: unconfined (the node's runtimes.container.allow_unconfined is off)"
                    .into(),
            ))
        }
        _ => Some(crate::seccomp::default_profile()),
    };
    let doc = spec::document(&SpecInput {
        args: run.args(),
        env: vars.clone(),
        cwd: run.image.working_dir.clone().unwrap_or_default(),
        uid,
        gid,
        additional_gids: groups,
        hostname: top.hostname.clone(),
        cgroups_path: inputs.paths.cgroups_path.clone(),
        limits,
        binds,
        devices,
        sysctl: item_run.sysctl.clone(),
        netns: netns.clone(),
        seccomp,
    })?;
    let spec = spec::from_document(doc.clone())?;
    let policy = crate::policy::Policy::resolve(
        defaults,
        &item_run.run_parameters,
        s.restart_policy.as_ref(),
    );
    let host_base = run.uses_host_rootfs();
    let mut h = sha2::Sha256::new();
    // The OCI types hold sets and maps (their order changes from run to run): hash our own
    // document instead, built in a fixed order from vectors and sorted maps; and the rootfs,
    // which the runtime spec does not name (a new version may change only files).
    let diff_ids: Vec<&str> = layers.iter().map(|(_, d, _)| d.as_str()).collect();
    let rootfs = serde_json::json!({
        "layers": diff_ids,
        "hostBase": host_base,
        "mountDirs": top.mount_dirs,
        "mountFiles": top.mount_files,
        "hosts": top.hosts,
    });
    let hashed = serde_json::json!([doc, rootfs]);
    h.update(serde_json::to_vec(&hashed)?);
    let hash = hex::encode(h.finalize())[..32].to_string();
    Ok(Recipe {
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
        volume: Some(
            item_run.quotas.state_limit.unwrap_or(0)
                + item_run
                    .quotas
                    .storage_limit
                    .unwrap_or(defaults.volume_size),
        )
        .filter(|l| *l > 0),
        quotas: item_run.quotas.clone(),
        paths: inputs.paths,
        netns,
        node_dmips: dmips,
        cores,
        hash,
        offline_ttl: item_run.offline_ttl.map(|d| d.0),
    })
}
