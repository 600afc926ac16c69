//! The Instance controller for `runtime: container`: waits for the instance's Item to be Ready,
//! assembles its rootfs and runtime spec, runs it as a containerd task, restarts it by the
//! reference's policy, stops it with SIGTERM then SIGKILL after a grace, adopts tasks that still
//! run after an aosd restart, and reports state, exits, probes and usage in status.
#![warn(missing_docs)]

mod act;
mod config;
pub mod host;
/// The `Networks` port (in aos-ports, shared with the Network controller).
pub use aos_ports::networks as network;
mod observe;
mod plan;
mod policy;
pub mod probes;
mod recipe;
mod reconciler;
mod report;
pub mod resources;
pub mod rootfs;
pub mod sampler;
mod seccomp;
mod spec;
mod uid;
mod volume;
mod wiring;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_containerd::{Containers, ContainersError};
use aos_reconcile::Reason;
use aos_store::StoreError;

pub use config::NodeResources;
pub use host::InstanceHost;
pub use reconciler::InstanceReconciler;
pub use uid::UidPool;
pub use wiring::{controller, run, spawn_events, sweep_orphans};

/// Label of our containers: the Instance's name.
pub const INSTANCE_LABEL: &str = "aos.edge/instance";
/// Label of our containers: the digest of everything the task was made from.
pub const CONFIG_LABEL: &str = "aos.edge/config";
/// Label of our containers: the network the task's namespace belongs to, if any.
pub const NETWORK_LABEL: &str = "aos.edge/network";
/// The finalizer that keeps an Instance until its task, mounts and files are gone.
pub const FINALIZER: &str = "aos.edge/instance";

#[derive(Debug, thiserror::Error)]
/// Why a reconcile of an Instance could not go on.
pub enum InstanceError {
    #[error(transparent)]
    /// The container runtime failed or is away.
    Runtime(#[from] ContainersError),
    #[error("store: {0}")]
    /// The store failed.
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    /// A file step failed.
    Io {
        /// What was being done.
        what: String,
        #[source]
        /// The cause.
        source: std::io::Error,
    },
    #[error("rootfs: {0}")]
    /// The rootfs cannot be made as asked (a stack that does not fit, a volume tool that failed).
    Rootfs(String),
    /// A step of the layer store (mounting a layer or a volume, writing stack fixups).
    #[error("{what}: {source}")]
    Layers {
        /// What was being done.
        what: String,
        #[source]
        /// The cause.
        source: aos_image::ImageError,
    },
    /// A system call on a path (a device node, a whiteout).
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        #[source]
        /// The cause.
        source: nix::errno::Errno,
    },
    /// A runtime spec that does not encode or decode.
    #[error("runtime spec: {0}")]
    Spec(#[from] serde_json::Error),
    #[error("{0}")]
    /// The item config or the node's settings ask for something invalid.
    Config(String),
    #[error("layer {0} is not ready on this node")]
    /// A layer of the item is not (or no longer) on this node.
    LayerMissing(String),
    #[error("the uid pool is exhausted ({0} instances hold every uid)")]
    /// Every uid of the pool is taken.
    NoUid(u32),
    #[error("the node declares no resource {0:?}")]
    /// The item asks for a resource the node does not declare.
    ResourceMissing(String),
    #[error("the node does not permit {0}")]
    /// The item asks for more than the node permits.
    NotPermitted(String),
    #[error("network: {0}")]
    /// The instance's network refused it (the reason says why).
    Network(#[from] network::NetworkError),
}

impl Reason for InstanceError {
    fn reason(&self) -> &'static str {
        match self {
            InstanceError::Runtime(e) => e.reason(),
            InstanceError::Store(_) => "StoreError",
            InstanceError::Io { .. } => "IoError",
            InstanceError::Rootfs(_) | InstanceError::Layers { .. } => "RootfsFailed",
            InstanceError::Sys { .. } => "SystemError",
            InstanceError::Spec(_) => "InvalidConfig",
            InstanceError::Config(_) => "InvalidConfig",
            InstanceError::LayerMissing(_) => "LayerMissing",
            InstanceError::NoUid(_) => "UidPoolExhausted",
            InstanceError::ResourceMissing(_) => "ResourceMissing",
            InstanceError::NotPermitted(_) => "NotPermitted",
            InstanceError::Network(e) => e.reason,
        }
    }
}

/// The defaults of REFERENCE.md and aosd's own, overridable per item and per instance.
#[derive(Clone, Debug)]
pub struct Defaults {
    /// Wait before a stopped task restarts.
    pub restart_interval: Duration,
    /// Starts allowed within `start_interval` before the instance fails.
    pub start_burst: u32,
    /// The window the start burst counts in.
    pub start_interval: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// Size of `/tmp` without a `tmpLimit`.
    pub tmp_size: u64,
    /// How often running instances' usage is read (in one pass).
    pub usage_interval: Duration,
    /// A reading is written to status when it moved further than this from the status: CPU in
    /// points of a core's percent, byte counts in percent of the written value.
    pub usage_step: f64,
    /// A status older than this is written anew even if nothing moved.
    pub usage_refresh: Duration,
    /// Bytes of an instance's volume (state and storage) when its item sets no `stateLimit` or
    /// `storageLimit` of its own; 0: no volume, plain unbounded directories.
    pub volume_size: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            restart_interval: Duration::from_secs(1),
            start_burst: 3,
            start_interval: Duration::from_secs(5),
            stop_grace: Duration::from_secs(10),
            tmp_size: 64 << 20,
            usage_interval: Duration::from_secs(30),
            usage_step: 2.0,
            usage_refresh: Duration::from_secs(300),
            volume_size: 256 << 20,
        }
    }
}

/// What the node lets an item ask for beyond the hardened default.
#[derive(Clone, Copy, Debug, Default)]
pub struct Permits {
    /// `networkMode: host` in an item config.
    pub host_network: bool,
    /// `seccomp: unconfined` in an item config.
    pub unconfined: bool,
}

/// How logs are written.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// The `aos-logger` binary.
    pub logger: PathBuf,
    /// Bytes of a log file before it rotates.
    pub max_size: u64,
    /// Rotated files kept.
    pub max_files: usize,
}

/// Everything the controller works with: its ports and its settings.
pub struct InstanceEnv {
    /// The container runtime.
    pub containers: Arc<dyn Containers>,
    /// Instance networking; `None`: instances with `spec.network` cannot start.
    pub networks: Option<Arc<dyn network::Networks>>,
    /// The node: layers, files, volumes, cgroups.
    pub host: Arc<dyn InstanceHost>,
    /// How task output is logged.
    pub logs: LogSettings,
    /// Defaults of the restart policy, limits and sampling.
    pub defaults: Defaults,
    /// What items may ask for beyond the hardened default.
    pub permits: Permits,
    /// The uids instances run as.
    pub uids: UidPool,
    /// The probes of running tasks.
    pub probes: probes::Probers,
    /// Tasks that hit their memory limit since they started.
    pub oom: Mutex<HashSet<String>>,
    /// Tasks being stopped for a deletion: when they were sent SIGTERM.
    pub stopping: Mutex<HashMap<String, tokio::time::Instant>>,
    /// The latest usage readings of running tasks.
    pub usage: sampler::Sampler,
    /// Which Instances are this node's to run.
    pub owner: Owner,
}

/// Which Instances a node runs: those whose `spec.nodeName` names it, and, on a node of its own
/// (not in a unit), those without one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    /// This node's Node object name.
    pub node: String,
    /// In a unit, an Instance without `nodeName` waits for placement.
    pub unit: bool,
}

impl Owner {
    /// Whether an Instance with this spec is this node's to run.
    pub fn owns(&self, spec: &aos_api::InstanceSpec) -> bool {
        match spec.node_name.as_deref() {
            Some(n) if !n.is_empty() => n == self.node,
            _ => !self.unit,
        }
    }
}

impl InstanceEnv {
    /// Whether the runtime said the task of `name` hit its memory limit since it started.
    pub fn oom_flagged(&self, name: &str) -> bool {
        self.oom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(name)
    }

    /// Forgets that the task of `name` hit its memory limit (it is gone or starts anew).
    pub fn oom_clear(&self, name: &str) {
        self.oom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// One step of stopping the task of `name` without waiting for it: SIGTERM the first
    /// time, SIGKILL once `grace` has passed since; once nothing runs, the task and container
    /// are deleted. `Some(d)`: still stopping, look again within `d` (the task's exit wakes
    /// the instance sooner); `None`: stopped and deleted. A deletion holds no worker while a
    /// task takes its grace, so many stop in parallel.
    pub async fn stop_step(
        &self,
        name: &str,
        grace: Duration,
    ) -> Result<Option<Duration>, InstanceError> {
        let running = self
            .containers
            .inspect(name)
            .await?
            .is_some_and(|c| c.task.is_some_and(|t| t.running));
        if !running {
            self.stopping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
            self.containers.remove(name).await?;
            self.probes.stop(name);
            return Ok(None);
        }
        let since = self
            .stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied();
        let Some(since) = since else {
            self.containers.kill(name, 15).await?;
            self.stopping
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.to_string(), tokio::time::Instant::now());
            return Ok(Some(grace));
        };
        let waited = since.elapsed();
        if waited < grace {
            return Ok(Some(grace - waited));
        }
        tracing::info!(
            container = name,
            grace_ms = grace.as_millis() as u64,
            "no exit after SIGTERM: SIGKILL"
        );
        self.containers.kill(name, 9).await?;
        Ok(Some(Duration::from_millis(200)))
    }

    /// Stops a task: SIGTERM, up to `grace` for it to exit, then SIGKILL; then deletes the
    /// task and container (which unmounts the rootfs).
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), InstanceError> {
        aos_containerd::stop_task(self.containers.as_ref(), name, grace).await?;
        self.containers.remove(name).await?;
        self.probes.stop(name);
        Ok(())
    }
}
