//! Each node's share of the unit, for `aosctl get nodes` (kubectl's "allocated resources"):
//! its instances (those placed on it; on a lone node, those without a node too) and what they
//! reserve there by the placement rule ([`aos_api::reserve`]): CPU in DMIPS and RAM, beside
//! what the node has.

use std::collections::{BTreeMap, HashMap};

use aos_api::itemconfig::RunConfig;
use aos_api::meta::DynObject;
use aos_api::reserve::{Asks, DEFAULT_RATIO};

/// What one node's instances take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allocated {
    pub instances: usize,
    /// DMIPS reserved.
    pub cpu: u64,
    /// Bytes of RAM reserved.
    pub ram: u64,
}

/// The allocation of every node that has instances.
pub fn per_node(
    nodes: &[DynObject],
    instances: &[DynObject],
    items: &[DynObject],
) -> BTreeMap<String, Allocated> {
    let lone = (nodes.len() == 1).then(|| nodes[0].metadata.name.clone());
    let asks: HashMap<(&str, &str), Asks> = items
        .iter()
        .filter_map(|i| {
            let config: RunConfig = serde_json::from_value(i.status.get("config")?.clone()).ok()?;
            let key = (
                i.spec.get("itemId")?.as_str()?,
                i.spec.get("version")?.as_str()?,
            );
            Some((key, Asks::of(&config)))
        })
        .collect();
    let ratio = |node: &str, what: &str| {
        nodes
            .iter()
            .find(|n| n.metadata.name == node)
            .and_then(|n| n.spec.pointer(&format!("/resourceRatios/{what}"))?.as_f64())
            .unwrap_or(DEFAULT_RATIO)
    };
    let mut out: BTreeMap<String, Allocated> = BTreeMap::new();
    for i in instances {
        let placed = i
            .spec
            .get("nodeName")
            .and_then(|n| n.as_str())
            .filter(|n| !n.is_empty());
        let Some(node) = placed.map(str::to_string).or_else(|| lone.clone()) else {
            continue;
        };
        let key = (
            i.spec.get("itemId").and_then(|v| v.as_str()).unwrap_or(""),
            i.spec.get("version").and_then(|v| v.as_str()).unwrap_or(""),
        );
        let a = asks.get(&key).copied().unwrap_or_default();
        let e = out.entry(node.clone()).or_default();
        e.instances += 1;
        e.cpu += a.cpu(ratio(&node, "cpu"));
        e.ram += a.ram(ratio(&node, "ram"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(
        kind: &str,
        name: &str,
        spec: serde_json::Value,
        status: serde_json::Value,
    ) -> DynObject {
        serde_json::from_value(json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": kind,
            "metadata": {"name": name}, "spec": spec, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn a_node_reserves_the_requests_of_its_instances_or_its_ratio_of_their_quotas() {
        let nodes = [
            obj("Node", "a", json!({}), json!({})),
            obj(
                "Node",
                "b",
                json!({"resourceRatios": {"cpu": 10.0}}),
                json!({}),
            ),
        ];
        let config = |item: serde_json::Value| json!({"config": {"image": {}, "item": item}});
        let items = [
            obj(
                "Item",
                "asks",
                json!({"itemId": "asks", "version": "1", "source": {}}),
                config(json!({"requestedResources": {"cpu": 300, "ram": 1000},
                              "quotas": {"cpuDMIPSLimit": 200}})),
            ),
            obj(
                "Item",
                "quota",
                json!({"itemId": "quota", "version": "1", "source": {}}),
                config(json!({"quotas": {"cpuDMIPSLimit": 1000, "ramLimit": 4000}})),
            ),
        ];
        let inst = |name: &str, item: &str, node: Option<&str>| {
            obj(
                "Instance",
                name,
                json!({"itemId": item, "version": "1", "nodeName": node}),
                json!({}),
            )
        };
        let instances = [
            inst("x", "asks", Some("a")),
            inst("y", "quota", Some("a")),
            inst("z", "quota", Some("b")),
            inst("unplaced", "quota", None),
        ];
        let got = per_node(&nodes, &instances, &items);
        let want = |instances, cpu, ram| Allocated {
            instances,
            cpu,
            ram,
        };
        // a: 200 (300 clamped to its quota) + 500 (half of 1000); RAM 1000 + 2000.
        assert_eq!(got["a"], want(2, 700, 3000));
        // b reserves 10 % of CPU quotas, the default half of RAM.
        assert_eq!(got["b"], want(1, 100, 2000));
        assert_eq!(got.len(), 2, "an unplaced instance is on no node of a unit");
        let lone = per_node(&nodes[..1], &instances[3..], &items);
        assert_eq!(lone["a"], want(1, 500, 2000), "a lone node runs it");
    }
}
