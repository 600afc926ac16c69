//! An Item in a unit of several nodes: which nodes fetch it (those an instance of it is placed
//! on; every node for components, which the OS runtimes of each node take), and which Instance
//! changes wake it. (Each node's entry in `status.nodes` and the sum of them:
//! `aos_api::ItemStatus::set_node`.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aos_api::{InstanceSpec, ItemSpec, ItemType, Object};
use aos_reconcile::Reader;
use aos_store::{Api, Backend, StoreError};

/// Whether a node needs an Item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// An instance of it is placed there (or it is a component: every node's OS runtimes
    /// may take it).
    Yes,
    /// Only instances being removed: kept while their tasks stop; look again soon.
    Leaving,
    No,
}

/// Whether node `node` needs the Item: a component always; a service when an Instance of its
/// id and version is placed there.
pub async fn needed_on(
    backend: &Arc<dyn Backend>,
    item: &Object<ItemSpec>,
    node: &str,
) -> Result<Need, StoreError> {
    if item.spec.type_ == ItemType::Component {
        return Ok(Need::Yes);
    }
    let (instances, _) = Api::<InstanceSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let mut need = Need::No;
    for i in instances.iter().filter(|i| {
        i.spec.node_name.as_deref() == Some(node)
            && i.spec.item_id == item.spec.item_id
            && i.spec.version == item.spec.version
    }) {
        if i.metadata.deletion_timestamp.is_none() {
            return Ok(Need::Yes);
        }
        need = Need::Leaving;
    }
    Ok(need)
}

/// The Item keys to wake when an Instance changes where it runs or what it runs, or starts
/// being removed: the Items of its item id and version, before and after. Other writes (its
/// status, every few seconds) wake none. (The final removal is not seen here: an Item whose
/// instances are leaving looks again by itself.)
pub fn instance_waker(
    items: Reader<ItemSpec>,
) -> impl Fn(&Object<InstanceSpec>) -> Vec<String> + Send + Sync + 'static {
    type Placed = (Option<String>, String, String, bool);
    struct Seen {
        placed: HashMap<String, (Placed, Option<Instant>)>,
        pruned: Instant,
    }
    let seen = Mutex::new(Seen {
        placed: HashMap::new(),
        pruned: Instant::now(),
    });
    move |i: &Object<InstanceSpec>| {
        let leaving = i.metadata.deletion_timestamp.is_some();
        let now = (
            i.spec.node_name.clone(),
            i.spec.item_id.clone(),
            i.spec.version.clone(),
            leaving,
        );
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        // Instances removed long ago (their last event looked like the one before) go.
        if seen.pruned.elapsed() > PRUNE_EVERY {
            seen.pruned = Instant::now();
            seen.placed
                .retain(|_, (_, since)| since.is_none_or(|t| t.elapsed() < PRUNE_EVERY));
        }
        let since = leaving.then(Instant::now);
        let was = seen
            .placed
            .insert(i.name().to_string(), (now.clone(), since))
            .map(|(p, _)| p);
        if was.as_ref() == Some(&now) {
            return Vec::new();
        }
        let wanted: HashSet<(String, String)> = [Some(now), was]
            .into_iter()
            .flatten()
            .map(|(_, id, v, _)| (id, v))
            .collect();
        items
            .list()
            .iter()
            .filter(|it| wanted.contains(&(it.spec.item_id.clone(), it.spec.version.clone())))
            .map(|it| it.name().to_string())
            .collect()
    }
}

/// How long a removed instance is remembered by [`instance_waker`].
const PRUNE_EVERY: Duration = Duration::from_secs(600);
