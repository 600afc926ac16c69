//! The Node controller: keeps the one Node resource of this node true to the host: node id,
//! architecture, OS, CPUs, DMIPS (configured or estimated), RAM, labels, the runtimes enabled in
//! config with their ids and instance limits, and usage (CPU, RAM, disk per partition),
//! refreshed periodically.

pub mod dmips;
pub mod host;
pub mod lifecycle;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{
    ids, DmipsSource, NodeSpec, NodeStatus, NodeUsage, Object, PartitionUsage, RuntimeInfo,
    RuntimeType,
};
use aos_reconcile::{Action, Context, Reason, Reconciler};
use aos_store::{Api, StoreError};
use tokio::sync::OnceCell;

/// What the node's config says about it.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub node_id: String,
    /// Configured DMIPS; `None` estimates it.
    pub dmips: Option<u64>,
    pub labels: BTreeMap<String, String>,
    /// Enabled runtimes and their instance limits (0: no limit).
    pub runtimes: Vec<(RuntimeType, u64)>,
    /// Partitions whose usage is reported: (name, path).
    pub partitions: Vec<(String, PathBuf)>,
    pub usage_interval: Duration,
    /// Another node whose heartbeat has not changed for this long is marked `Ready=Unknown`.
    pub lost_after: Duration,
    /// The address other nodes of a unit reach this one at; `None`: the source address of the
    /// default route, looked up at each status write (it may come from DHCP).
    pub address: Option<std::net::Ipv4Addr>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("failed to write node status: {0}")]
    WriteStatus(#[from] StoreError),
}

impl Reason for NodeError {
    fn reason(&self) -> &'static str {
        "WriteStatusFailed"
    }
}

/// The static facts, read once.
#[derive(Clone, Debug)]
struct Facts {
    arch: String,
    os: String,
    os_version: Option<String>,
    cpus: u64,
    total_ram: u64,
    dmips: u64,
    dmips_source: DmipsSource,
}

/// Whether the container runtime answers: `Ok`, or why not.
pub type RuntimeCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

pub struct NodeReconciler {
    config: NodeConfig,
    facts: OnceCell<Facts>,
    last_cpu: Mutex<Option<(u64, u64)>>,
    runtime: Option<RuntimeCheck>,
    peers: lifecycle::Peers,
}

impl NodeReconciler {
    pub fn new(config: NodeConfig) -> Self {
        NodeReconciler {
            config,
            facts: OnceCell::new(),
            last_cpu: Mutex::new(None),
            runtime: None,
            peers: lifecycle::Peers::default(),
        }
    }

    /// Reports the container runtime's state in the `ContainerRuntimeReady` condition.
    pub fn with_runtime_check(mut self, check: RuntimeCheck) -> Self {
        self.runtime = Some(check);
        self
    }

    /// The name of this node's resource.
    pub fn object_name(&self) -> String {
        host::object_name(&self.config.node_id)
    }

    /// Creates the Node resource if there is none yet.
    pub async fn ensure_node(&self, api: &Api<NodeSpec>) -> Result<(), StoreError> {
        let name = self.object_name();
        if api.get_opt(&name).await?.is_none() {
            api.apply(&Object::new(name, NodeSpec::default())).await?;
        }
        Ok(())
    }

    async fn facts(&self) -> Facts {
        let configured = self.config.dmips;
        self.facts
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || {
                    let read = |p: &str| std::fs::read_to_string(p).ok();
                    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
                    let (total_ram, _) = parse_mem(read("/proc/meminfo"));
                    let (dmips, dmips_source) = match configured {
                        Some(d) => (d, DmipsSource::Configured),
                        None => dmips::estimate(read("/proc/cpuinfo").as_deref(), cpus),
                    };
                    Facts {
                        arch: std::env::consts::ARCH.to_string(),
                        os: std::env::consts::OS.to_string(),
                        os_version: host::os_version(),
                        cpus,
                        total_ram,
                        dmips,
                        dmips_source,
                    }
                })
                .await
                .expect("reading host facts does not panic")
            })
            .await
            .clone()
    }

    fn usage(&self, facts: &Facts) -> NodeUsage {
        let read = |p: &str| std::fs::read_to_string(p).ok();
        let (total, available) = parse_mem(read("/proc/meminfo"));
        let cpu_now = read("/proc/stat").and_then(|t| host::parse_cpu_stat(&t));
        let mut last = self.last_cpu.lock().unwrap_or_else(|e| e.into_inner());
        let cpu_percent = match (*last, cpu_now) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                (b1 - b0) as f64 * 100.0 / (t1 - t0) as f64
            }
            _ => 0.0,
        };
        *last = cpu_now.or(*last);
        let partitions = self
            .config
            .partitions
            .iter()
            .filter_map(|(name, path)| {
                let (total_size, used_size) = host::disk_usage(path)?;
                Some(PartitionUsage {
                    name: name.clone(),
                    path: path.display().to_string(),
                    total_size,
                    used_size,
                })
            })
            .collect();
        NodeUsage {
            cpu_percent: (cpu_percent * 10.0).round() / 10.0,
            cpu_dmips: (facts.dmips as f64 * cpu_percent / 100.0).round() as u64,
            ram_used: total.saturating_sub(available),
            partitions,
            updated_at: Some(chrono::Utc::now()),
        }
    }

    /// The status the node should show now (pure apart from the usage sample).
    fn desired(&self, spec: &NodeSpec, facts: &Facts, usage: NodeUsage) -> NodeStatus {
        let mut labels = self.config.labels.clone();
        labels.extend(spec.labels.clone());
        let runtimes = self
            .config
            .runtimes
            .iter()
            .map(|(t, max)| RuntimeInfo {
                id: ids::runtime_id(t.as_str(), &self.config.node_id).to_string(),
                type_: *t,
                arch: facts.arch.clone(),
                os: facts.os.clone(),
                max_instances: match t {
                    RuntimeType::Container => *max,
                    RuntimeType::Boot | RuntimeType::Rootfs => 1,
                },
                dmips: facts.dmips,
                ram: facts.total_ram,
            })
            .collect();
        NodeStatus {
            node_id: self.config.node_id.clone(),
            arch: facts.arch.clone(),
            os: facts.os.clone(),
            os_version: facts.os_version.clone(),
            cpus: facts.cpus,
            dmips: facts.dmips,
            dmips_source: facts.dmips_source,
            total_ram: facts.total_ram,
            labels,
            runtimes,
            usage: Some(usage),
            heartbeat_time: Some(chrono::Utc::now()),
            address: self
                .config
                .address
                .or_else(host::default_route_source)
                .map(|a| a.to_string()),
            ..NodeStatus::default()
        }
    }
}

fn parse_mem(text: Option<String>) -> (u64, u64) {
    text.map(|t| host::parse_meminfo(&t)).unwrap_or((0, 0))
}

impl Reconciler for NodeReconciler {
    type Kind = NodeSpec;
    type Error = NodeError;

    async fn apply(
        &self,
        obj: Arc<Object<NodeSpec>>,
        ctx: &Context<NodeSpec>,
    ) -> Result<Action, NodeError> {
        if obj.metadata.name != self.object_name() {
            // Another node of the unit: not ours to report, only to watch for its heartbeat.
            return lifecycle::check_peer(&self.peers, self.config.lost_after, &obj, ctx).await;
        }
        let facts = self.facts().await;
        let usage = self.usage(&facts);
        let desired = self.desired(&obj.spec, &facts, usage);
        let store = ctx.backend.health();
        let runtime = self.runtime.clone();
        ctx.api
            .update_status(&obj.metadata.name, |s| {
                let common = std::mem::take(&mut s.common);
                *s = NodeStatus {
                    common,
                    ..desired.clone()
                };
                s.common.set_condition(
                    aos_api::condition::READY,
                    aos_api::ConditionStatus::True,
                    aos_api::condition::reason::NODE_REPORTED,
                    "host facts and usage are current",
                    chrono::Utc::now(),
                );
                let (status, reason) = if store.is_ok() {
                    (
                        aos_api::ConditionStatus::True,
                        aos_api::condition::reason::STORE_INTACT,
                    )
                } else if store.failure.is_some() {
                    (
                        aos_api::ConditionStatus::False,
                        aos_api::condition::reason::STORE_FAILING,
                    )
                } else {
                    (
                        aos_api::ConditionStatus::False,
                        aos_api::condition::reason::DAMAGED_RECORDS,
                    )
                };
                if let Some(check) = &runtime {
                    let (st, reason, msg) = match check() {
                        Ok(()) => (
                            aos_api::ConditionStatus::True,
                            aos_api::condition::reason::ANSWERING,
                            String::new(),
                        ),
                        Err(why) => (
                            aos_api::ConditionStatus::False,
                            aos_api::condition::reason::RUNTIME_UNAVAILABLE,
                            why,
                        ),
                    };
                    s.common.set_condition(
                        aos_api::condition::CONTAINER_RUNTIME_READY,
                        st,
                        reason,
                        &msg,
                        chrono::Utc::now(),
                    );
                }
                s.common.set_condition(
                    aos_api::condition::STORE_HEALTHY,
                    status,
                    reason,
                    &store.summary(),
                    chrono::Utc::now(),
                );
            })
            .await?;
        Ok(Action::Requeue(self.config.usage_interval))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reconciler(runtimes: Vec<(RuntimeType, u64)>) -> NodeReconciler {
        NodeReconciler::new(NodeConfig {
            node_id: "node1".into(),
            dmips: Some(10_000),
            labels: [("zone".to_string(), "a".to_string())].into(),
            runtimes,
            partitions: vec![("root".into(), "/".into())],
            usage_interval: Duration::from_secs(10),
            lost_after: Duration::from_secs(40),
            address: Some([192, 0, 2, 7].into()),
        })
    }

    #[tokio::test]
    async fn runtimes_carry_the_reference_ids_and_single_instance_limits() {
        let r = reconciler(vec![(RuntimeType::Container, 0), (RuntimeType::Boot, 5)]);
        let facts = r.facts().await;
        let s = r.desired(&NodeSpec::default(), &facts, NodeUsage::default());
        assert_eq!(s.runtimes.len(), 2);
        assert_eq!(s.runtimes[1].id, "ddb944db-faba-39d9-9982-8be46f10293b");
        assert_eq!(
            s.runtimes[1].max_instances, 1,
            "boot runs one instance whatever the config"
        );
        assert_eq!(s.dmips, 10_000);
        assert_eq!(s.dmips_source, DmipsSource::Configured);
        assert!(s.total_ram > 0 && s.cpus > 0);
        assert_eq!(
            s.address.as_deref(),
            Some("192.0.2.7"),
            "the configured address"
        );
    }

    #[tokio::test]
    async fn spec_labels_override_configured_ones() {
        let r = reconciler(vec![]);
        let facts = r.facts().await;
        let spec = NodeSpec {
            labels: [("zone".to_string(), "b".to_string())].into(),
            ..NodeSpec::default()
        };
        assert_eq!(
            r.desired(&spec, &facts, NodeUsage::default()).labels["zone"],
            "b"
        );
    }

    #[tokio::test]
    async fn usage_reports_memory_and_partitions() {
        let r = reconciler(vec![]);
        let facts = r.facts().await;
        let u = r.usage(&facts);
        assert!(u.ram_used > 0);
        assert_eq!(u.partitions.len(), 1);
        assert!(u.partitions[0].total_size >= u.partitions[0].used_size);
    }
}
