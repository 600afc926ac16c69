//! Every read a reconcile of an Instance makes, of the store and of the node, into one
//! snapshot ([`Observed`]): the latest Instance, its Item and what the task is made from, the
//! container and its task, OOM kills, the probes' findings and a usage sample. Nothing here
//! changes the store or the host, except that a uid recorded in status is claimed in the pool.

use std::sync::Arc;

use aos_api::{
    InstanceSpec, ItemPhase, ItemSpec, LayerPhase, LayerSpec, NetworkSpec, NodeSpec, Object,
    RuntimeType,
};
use aos_containerd::{ContainersError, TaskInfo};
use aos_store::{Api, Backend};
use chrono::{DateTime, Utc};

use crate::probes::ProbeState;
use crate::recipe::{Inputs, LayerInput, NetworkInput};
use crate::sampler::Fresh;
use crate::{InstanceEnv, InstanceError};

/// What one reconcile of an Instance saw.
#[derive(Debug)]
pub struct Observed {
    /// The Instance as the store has it now (the cache may lag our own last write).
    pub obj: Arc<Object<InstanceSpec>>,
    pub now: DateTime<Utc>,
    /// The uid and gid the instance holds; `None` before it was given any.
    pub ids: Option<(u32, u32)>,
    /// Its container and task; an error when the runtime does not answer.
    pub container: Result<Option<TaskInfo>, ContainersError>,
    /// Its Item (the one of its item id and version that is not being deleted).
    pub item: Option<Object<ItemSpec>>,
    /// What its task is made from, once the Item is Ready.
    pub inputs: Option<Inputs>,
    /// The kernel killed its stopped task for memory.
    pub oom: bool,
    /// The probes that run for it: for which task (their key) and what they found.
    pub probes: Option<(String, ProbeState)>,
    /// What its running task uses, when there is a reading newer than its status (the
    /// sampler's, or one taken now for a task without any).
    pub sample: Option<Fresh>,
    /// Since when the node's cloud connector has had no cloud (its Node's `CloudConnected`
    /// condition); `None` when it has one or runs no connector.
    pub offline_since: Option<DateTime<Utc>>,
}

impl Observed {
    /// The task, when one runs.
    pub fn running(&self) -> Option<aos_containerd::TaskState> {
        match &self.container {
            Ok(Some(c)) => c.task.filter(|t| t.running),
            _ => None,
        }
    }
}

/// This node's Node (read once per reconcile: its facts and whether its cloud is there). In a
/// unit, the one of its name; alone, the only one there is.
async fn node(
    env: &InstanceEnv,
    backend: &Arc<dyn Backend>,
) -> Result<Option<Object<NodeSpec>>, InstanceError> {
    let api = Api::<NodeSpec>::new(backend.clone());
    if let Some(n) = api.get_opt(&env.owner.node).await? {
        return Ok(Some(n));
    }
    if env.owner.unit {
        return Ok(None);
    }
    let (nodes, _) = api.list(&Default::default()).await?;
    Ok(nodes.into_iter().next())
}

/// Where this node's facts of an Item are: in a unit, its own entry and Layer copies.
fn unit_node(env: &InstanceEnv) -> Option<&str> {
    env.owner.unit.then_some(env.owner.node.as_str())
}

/// Since when the node's cloud is away, from its Node's `CloudConnected` condition.
fn offline_since(node: Option<&Object<NodeSpec>>) -> Option<DateTime<Utc>> {
    node?
        .status
        .common
        .condition(aos_api::condition::CLOUD_CONNECTED)
        .filter(|c| c.status == aos_api::ConditionStatus::False)
        .map(|c| c.last_transition_time)
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

async fn network(
    env: &InstanceEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<InstanceSpec>,
) -> Result<NetworkInput, InstanceError> {
    let (Some(n), Some(nets)) = (&obj.spec.network, &env.networks) else {
        return Ok(match obj.spec.network {
            Some(_) => NetworkInput::Unavailable,
            None => NetworkInput::None,
        });
    };
    // Not before the network is up: what the instance is made with depends on it.
    let Some(net) = Api::<NetworkSpec>::new(backend.clone())
        .get_opt(&n.network_id)
        .await?
        .filter(|n| n.status.bridge.is_some() && n.metadata.deletion_timestamp.is_none())
    else {
        return Ok(NetworkInput::NotReady(n.network_id.clone()));
    };
    // Always the network's resolver: a resolver that could not listen yet is retried by the
    // Network controller, and what an instance is made with must not flip with it.
    // In a unit: this node's gateway (its slice's), where its resolver listens; not before
    // this node has its slice.
    let node = unit_node(env);
    if node.is_some() && net.status.gateway_on(node).is_none() {
        return Ok(NetworkInput::NotReady(n.network_id.clone()));
    }
    let servers: Vec<String> = match net.status.gateway_on(node) {
        Some(gw) => vec![gw],
        None => net.spec.dns_servers.clone(),
    };
    Ok(NetworkInput::Ready {
        resolv_conf: Some(servers)
            .filter(|d| !d.is_empty())
            .map(|d| d.iter().map(|s| format!("nameserver {s}\n")).collect()),
        netns: nets.netns_path(obj.name()),
    })
}

async fn inputs(
    env: &InstanceEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<InstanceSpec>,
    item: &Object<ItemSpec>,
    node: Option<&Object<NodeSpec>>,
) -> Result<Inputs, InstanceError> {
    // This node's platform's image (in a unit of mixed platforms each has its own).
    let resolution = item
        .status
        .resolution(&aos_api::native_platform())
        .unwrap_or_default();
    let run = resolution.config;
    let layer_api = Api::<LayerSpec>::new(backend.clone());
    let mut layers = Vec::new();
    for name in &resolution.layers {
        let diff_id = layer_api
            .get_opt(&aos_api::layer_object_name(name, unit_node(env)))
            .await?
            .filter(|l| l.status.phase == LayerPhase::Ready)
            .and_then(|l| l.spec.diff_id);
        let facts = diff_id.as_deref().and_then(|d| env.host.layer(d));
        layers.push(LayerInput {
            name: name.clone(),
            diff_id,
            facts,
        });
    }
    let node = node
        .map(|n| (n.status.dmips, n.status.cpus))
        .unwrap_or((0, 1));
    let wanted = run.as_ref().map(|r| r.item().resources).unwrap_or_default();
    Ok(Inputs {
        item_name: item.name().to_string(),
        run,
        layers,
        node,
        granted: env.host.grant(&wanted),
        resolv_conf: env.host.resolv_conf(),
        network: network(env, backend, obj).await?,
        paths: env.host.paths(obj.name()),
    })
}

/// Reads everything a reconcile of `obj` decides on; `None` when the Instance is gone.
pub async fn observe(
    env: &InstanceEnv,
    backend: &Arc<dyn Backend>,
    obj: &Object<InstanceSpec>,
) -> Result<Option<Observed>, InstanceError> {
    let api = Api::<InstanceSpec>::new(backend.clone());
    let Some(obj) = api.get_opt(obj.name()).await? else {
        return Ok(None);
    };
    let obj = Arc::new(obj);
    let now = Utc::now();
    let mut o = Observed {
        obj: obj.clone(),
        now,
        ids: None,
        container: Ok(None),
        item: None,
        inputs: None,
        oom: false,
        probes: None,
        sample: None,
        offline_since: None,
    };
    if obj.spec.runtime != RuntimeType::Container {
        return Ok(Some(o));
    }
    let name = obj.name();
    if let Some(uid) = obj.status.uid {
        env.uids.claim(uid);
        o.ids = Some((uid, obj.status.gid.unwrap_or(uid)));
    }
    o.item = find_item(backend, &obj.spec).await?;
    let node = node(env, backend).await?;
    o.offline_since = offline_since(node.as_ref());
    o.container = env.containers.inspect(name).await;
    if let Some(item) = o
        .item
        .as_ref()
        .filter(|i| i.status.phase_on(unit_node(env)) == ItemPhase::Ready)
    {
        o.inputs = Some(inputs(env, backend, &obj, item, node.as_ref()).await?);
    }
    match o.container.as_ref().ok().and_then(|c| c.as_ref()?.task) {
        Some(t) if t.running => {
            o.probes = env.probes.current(name);
            let prev = obj.status.usage.as_ref();
            o.sample = env.usage.latest(name, prev.map(|p| p.updated_at));
            if prev.is_none() && o.sample.is_none() {
                // A task just started: its first reading now, the sampler's after.
                env.usage.forget(name);
                o.sample = Some(crate::sampler::read(env, &obj));
            }
        }
        // The cgroup lives until the task is deleted: ask it before the task goes.
        Some(_) => o.oom = env.oom_flagged(name) || env.host.oom_kills(name) > 0,
        None => {}
    }
    Ok(Some(o))
}
