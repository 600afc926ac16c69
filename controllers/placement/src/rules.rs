//! The placement decision, as a pure function of what the unit's nodes offer and what its
//! instances ask for (the reference's rules, ../shared/REFERENCE.md, "Cloud protocol"):
//! instances are placed in order of priority (highest first), then item id; a node qualifies
//! when it is ready, runs the instance's runtime type, matches the item's platform, carries
//! every label of the instance's `nodeSelector`, has the CPU and RAM the instance requests free,
//! and has room under the runtime's `maxInstances`. Of the nodes that qualify the one of highest
//! priority wins, then the one with the most free CPU, then RAM, then the one with the fewest
//! instances (so that instances that request nothing still spread), then the first by name.
//! An instance on a node that is no longer ready moves when its item's balancing policy allows
//! it. An instance that fits nowhere gets the reason of each node, counted like the
//! Kubernetes scheduler does ("0/3 nodes are available: 2 insufficient RAM, 1 not ready").

use std::collections::{BTreeMap, HashMap};

use aos_api::RuntimeType;

/// A node as placement sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    pub priority: i64,
    pub labels: BTreeMap<String, String>,
    /// OCI names: `linux`, `amd64`/`arm64`/….
    pub os: String,
    pub arch: String,
    /// Runtime types and their instance limits (0: none).
    pub runtimes: Vec<(RuntimeType, u64)>,
    /// Capacity: DMIPS and bytes of RAM instances may take.
    pub dmips: u64,
    pub ram: u64,
    /// Percent of an item's quota that an instance without a request takes (REFERENCE: 50).
    pub cpu_ratio: f64,
    pub ram_ratio: f64,
}

/// What an item asks for, from its config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Demand {
    /// `requestedResources.cpu`/`ram` when set, else `None`.
    pub cpu_request: Option<u64>,
    pub ram_request: Option<u64>,
    /// `quotas.cpuDMIPSLimit`/`ramLimit`.
    pub cpu_quota: Option<u64>,
    pub ram_quota: Option<u64>,
    /// The platforms (`os/arch`) the Item runs on (`ItemStatus::platforms`): empty when not
    /// known, then every platform may try.
    pub platforms: Vec<String>,
    /// `balancingPolicy` is not `disabled`: instances move off a node that is lost.
    pub movable: bool,
}

/// An instance as placement sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InstanceView {
    pub name: String,
    pub priority: u64,
    pub item_id: String,
    pub runtime: RuntimeType,
    pub node_selector: BTreeMap<String, String>,
    pub demand: Demand,
    /// Where it is placed now.
    pub node: Option<String>,
}

/// What placement decided for one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Place it on this node (new, or moved off a lost node).
    Place(String),
    /// It stays where it is.
    Stay,
    /// No node can take it, and why, node by node (summed up in the message).
    Unschedulable(String),
}

use aos_api::reserve::reserve as request;

#[derive(Clone, Debug, Default)]
struct Load {
    cpu: u64,
    ram: u64,
    count: HashMap<RuntimeType, u64>,
}

impl Load {
    fn add(&mut self, node: &NodeView, i: &InstanceView) {
        let d = &i.demand;
        self.cpu += request(d.cpu_request, d.cpu_quota, node.cpu_ratio);
        self.ram += request(d.ram_request, d.ram_quota, node.ram_ratio);
        *self.count.entry(i.runtime).or_default() += 1;
    }
}

/// Why `node` cannot take `i` under `load`, or `None` when it can.
fn unfit(node: &NodeView, load: &Load, i: &InstanceView) -> Option<&'static str> {
    if !node.ready {
        return Some("not ready");
    }
    let Some((_, max)) = node.runtimes.iter().find(|(t, _)| *t == i.runtime) else {
        return Some(match i.runtime {
            RuntimeType::Container => "no container runtime",
            RuntimeType::Boot => "no boot runtime",
            RuntimeType::Rootfs => "no rootfs runtime",
        });
    };
    let d = &i.demand;
    if !d.platforms.is_empty() && !d.platforms.contains(&format!("{}/{}", node.os, node.arch)) {
        return Some("other platform");
    }
    if i.node_selector
        .iter()
        .any(|(k, v)| node.labels.get(k) != Some(v))
    {
        return Some("labels not matched");
    }
    if *max > 0 && load.count.get(&i.runtime).copied().unwrap_or(0) >= *max {
        return Some("maxInstances reached");
    }
    let cpu = request(d.cpu_request, d.cpu_quota, node.cpu_ratio);
    if cpu > 0 && load.cpu + cpu > node.dmips {
        return Some("insufficient CPU");
    }
    let ram = request(d.ram_request, d.ram_quota, node.ram_ratio);
    if ram > 0 && load.ram + ram > node.ram {
        return Some("insufficient RAM");
    }
    None
}

/// `0/3 nodes are available: 2 insufficient RAM, 1 not ready`.
fn summary(total: usize, reasons: &[&'static str]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons {
        *counts.entry(r).or_default() += 1;
    }
    let mut parts: Vec<(usize, &str)> = counts.into_iter().map(|(r, n)| (n, r)).collect();
    parts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let parts: Vec<String> = parts.iter().map(|(n, r)| format!("{n} {r}")).collect();
    if parts.is_empty() {
        format!("0/{total} nodes are available: the unit has no nodes")
    } else {
        format!("0/{total} nodes are available: {}", parts.join(", "))
    }
}

/// How good a node is for the next instance: priority, free CPU, free RAM, fewest instances.
type Rank = (i64, u64, u64, std::cmp::Reverse<u64>);

/// Decides every instance: where the unplaced (and the movable ones on lost nodes) go.
pub fn place(nodes: &[NodeView], instances: &[InstanceView]) -> BTreeMap<String, Decision> {
    let by_name: HashMap<&str, &NodeView> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();
    let mut load: HashMap<&str, Load> = HashMap::new();
    let mut out = BTreeMap::new();
    let mut todo = Vec::new();
    for i in instances {
        match i.node.as_deref().map(|n| (n, by_name.get(n))) {
            // On a node that is there: it stays unless that node is lost and it may move.
            Some((n, Some(node))) if node.ready || !i.demand.movable => {
                load.entry(n).or_default().add(node, i);
                out.insert(i.name.clone(), Decision::Stay);
            }
            // On a node the unit does not know (yet): placed by the user, left alone.
            Some((_, None)) => {
                out.insert(i.name.clone(), Decision::Stay);
            }
            _ => todo.push(i),
        }
    }
    todo.sort_by(|a, b| {
        b.priority
            .cmp(&a.priority)
            .then(a.item_id.cmp(&b.item_id))
            .then(a.name.cmp(&b.name))
    });
    for i in todo {
        let mut reasons = Vec::new();
        let mut best: Option<(&NodeView, Rank)> = None;
        for node in nodes {
            let l = load.get(node.name.as_str()).cloned().unwrap_or_default();
            if let Some(why) = unfit(node, &l, i) {
                reasons.push(why);
                continue;
            }
            let rank = (
                node.priority,
                node.dmips.saturating_sub(l.cpu),
                node.ram.saturating_sub(l.ram),
                std::cmp::Reverse(l.count.values().sum::<u64>()),
            );
            if best.as_ref().is_none_or(|(_, b)| rank > *b) {
                best = Some((node, rank));
            }
        }
        let decision = match best {
            Some((node, _)) => {
                load.entry(node.name.as_str()).or_default().add(node, i);
                if i.node.as_deref() == Some(node.name.as_str()) {
                    Decision::Stay
                } else {
                    Decision::Place(node.name.clone())
                }
            }
            None => Decision::Unschedulable(summary(nodes.len(), &reasons)),
        };
        out.insert(i.name.clone(), decision);
    }
    out
}
