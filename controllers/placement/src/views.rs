//! What placement reads, from the store's objects: a Node's offer (readiness, priority, labels,
//! platform, runtimes, capacity, resource ratios) and an Instance's demand (its Item's image
//! platform, quotas, `requestedResources` and `balancingPolicy`).

use aos_api::condition::READY;
use aos_api::{ConditionStatus, InstanceSpec, ItemSpec, NodeSpec, Object};

use crate::rules::{Demand, InstanceView, NodeView};

pub fn node_view(n: &Object<NodeSpec>) -> NodeView {
    let s = &n.status;
    let ratios = n.spec.resource_ratios.clone().unwrap_or_default();
    NodeView {
        name: n.metadata.name.clone(),
        ready: s
            .common
            .condition(READY)
            .is_some_and(|c| c.status == ConditionStatus::True),
        priority: n.spec.priority,
        labels: s.labels.clone(),
        os: s.os.clone(),
        arch: aos_api::oci_arch(&s.arch).to_string(),
        runtimes: s
            .runtimes
            .iter()
            .map(|r| (r.type_, r.max_instances))
            .collect(),
        dmips: s.dmips,
        ram: s.total_ram,
        cpu_ratio: ratios.cpu.unwrap_or(aos_api::reserve::DEFAULT_RATIO),
        ram_ratio: ratios.ram.unwrap_or(aos_api::reserve::DEFAULT_RATIO),
    }
}

/// What the Item of an instance's version asks for; an Item not resolved yet asks for nothing
/// but the runtime (its platform and quotas are unknown).
pub fn demand(item: Option<&Object<ItemSpec>>) -> Demand {
    let Some(config) = item.and_then(|i| i.status.config.as_ref()) else {
        return Demand {
            movable: true,
            ..Demand::default()
        };
    };
    let ic = config.item();
    let asks = aos_api::reserve::Asks::of(config);
    let policy = ic.other.get("balancingPolicy").and_then(|p| p.as_str());
    Demand {
        cpu_request: asks.cpu_request,
        ram_request: asks.ram_request,
        cpu_quota: asks.cpu_quota,
        ram_quota: asks.ram_quota,
        platforms: item.map(|i| i.status.platforms()).unwrap_or_default(),
        movable: !policy.is_some_and(|p| p.eq_ignore_ascii_case("disabled")),
    }
}

pub fn instance_view(i: &Object<InstanceSpec>, item: Option<&Object<ItemSpec>>) -> InstanceView {
    InstanceView {
        name: i.metadata.name.clone(),
        priority: i.spec.priority,
        item_id: i.spec.item_id.clone(),
        runtime: i.spec.runtime,
        node_selector: i.spec.node_selector.clone(),
        demand: demand(item),
        node: i.spec.node_name.clone().filter(|n| !n.is_empty()),
    }
}
