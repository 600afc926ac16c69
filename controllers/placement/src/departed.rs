//! Forgetting nodes that left the unit (their Node deleted, and not made again): what is kept
//! in the store for them alone would otherwise stay for good, because only they would remove it.
//! Their Layer copies go (their finalizer released: the files went with the node), their
//! entries leave Items' status, their slices and finalizers leave Networks (a Network being deleted
//! would wait for them forever). The unit's leader does this, like placement, for nodes gone
//! for a grace period (a node re-registers its Node within a heartbeat or two: a Node deleted
//! by mistake costs nothing).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use aos_api::{ItemSpec, LayerSpec, NetworkSpec, NodeSpec, Selector};
use aos_store::{Api, Backend, StoreError};

/// The prefix of a node's own finalizer on a Network (`aos.edge/network-<node>`).
const NETWORK_FINALIZER: &str = "aos.edge/network-";

/// What one pass forgot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub layers: usize,
    pub item_entries: usize,
    pub network_finalizers: usize,
    /// Departed nodes dropped from a Network's status (their subnet slice, their conditions),
    /// counted once per Network and node.
    pub network_nodes: usize,
}

/// Since when each node seen in the store has had no Node object, as this leader saw it.
#[derive(Debug, Default)]
pub struct Departures {
    since: HashMap<String, Instant>,
}

impl Departures {
    /// Whether `node` (absent now) has been absent for `grace`; starts its clock the first time.
    fn gone_for(&mut self, node: &str, grace: Duration) -> bool {
        let t = *self
            .since
            .entry(node.to_string())
            .or_insert_with(Instant::now);
        t.elapsed() >= grace
    }
}

/// One pass: everything kept for nodes with no Node object for `grace`.
pub async fn forget_departed(
    backend: &Arc<dyn Backend>,
    departures: &mut Departures,
    grace: Duration,
) -> Result<Forgotten, StoreError> {
    let all = Selector::everything();
    let (nodes, _) = Api::<NodeSpec>::new(backend.clone()).list(&all).await?;
    let present: HashSet<String> = nodes.iter().map(|n| n.metadata.name.clone()).collect();
    departures.since.retain(|n, _| !present.contains(n));
    let mut gone = |n: &str| !present.contains(n) && departures.gone_for(n, grace);
    let mut done = Forgotten::default();

    let layers = Api::<LayerSpec>::new(backend.clone());
    for l in layers.list(&all).await?.0 {
        let Some(node) = l.spec.node_name.as_deref().filter(|n| gone(n)) else {
            continue;
        };
        tracing::info!(
            layer = l.metadata.name,
            node,
            "forgetting a departed node's layer"
        );
        let name = l.metadata.name.clone();
        match layers.delete(&name).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        }
        if layers.get_opt(&name).await?.is_some() {
            layers.set_finalizers(&name, Vec::new(), None).await?;
        }
        done.layers += 1;
    }

    let items = Api::<ItemSpec>::new(backend.clone());
    for i in items.list(&all).await?.0 {
        let departed: Vec<String> = i.status.nodes.keys().filter(|n| gone(n)).cloned().collect();
        if departed.is_empty() {
            continue;
        }
        items
            .update_status(&i.metadata.name, |s| {
                for n in &departed {
                    s.set_node(n, None);
                }
            })
            .await?;
        done.item_entries += departed.len();
    }

    let networks = Api::<NetworkSpec>::new(backend.clone());
    for n in networks.list(&all).await?.0 {
        let keep: Vec<String> = n
            .metadata
            .finalizers
            .iter()
            .filter(|f| {
                f.strip_prefix(NETWORK_FINALIZER)
                    .is_none_or(|node| !gone(node))
            })
            .cloned()
            .collect();
        let dropped = n.metadata.finalizers.len() - keep.len();
        if dropped > 0 {
            networks
                .set_finalizers(&n.metadata.name, keep, n.metadata.resource_version.into())
                .await?;
            done.network_finalizers += dropped;
        }
        // Its slice of the subnet is free for another node; its conditions leave the sum.
        let mut departed: Vec<String> = n
            .status
            .slices
            .keys()
            .chain(n.status.nodes.keys())
            .filter(|s| gone(s))
            .cloned()
            .collect();
        departed.sort();
        departed.dedup();
        if !departed.is_empty() {
            networks
                .update_status(&n.metadata.name, |s| {
                    for node in &departed {
                        s.slices.remove(node);
                        s.forget_node(node, chrono::Utc::now());
                    }
                })
                .await?;
            done.network_nodes += departed.len();
        }
    }
    Ok(done)
}
