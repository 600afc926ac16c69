//! Placement of a unit's instances on its nodes. Every node of a unit (`node.placement =
//! "unit"`) runs this; the one holding the `placement` lease ([`lease`]) acts: on every change
//! of Nodes, Items or Instances (and every `interval`) it reads them ([`views`]), decides
//! ([`rules`]) and writes the decisions: `spec.nodeName` of the instances it places (a
//! compare-and-swap on the instance: a concurrent change wins and is decided again), and the
//! `Scheduled` condition (`Placed`, or `Unschedulable` with each node's reason). Once a minute
//! it also forgets nodes that left the unit ([`departed`]).

pub mod departed;
pub mod lease;
pub mod rules;
pub mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aos_api::condition::{reason, SCHEDULED};
use aos_api::{ConditionStatus, InstanceSpec, ItemSpec, NodeSpec, Object, Selector};
use aos_store::{Api, Backend, StoreError};
use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use rules::Decision;

#[derive(Clone, Debug)]
pub struct PlacementConfig {
    /// This node's name (its claim on the lease).
    pub node: String,
    pub lease: Duration,
    /// A pass at least this often while leading.
    pub interval: Duration,
    /// How long a node's Node must be missing before the leader forgets what it left in the
    /// store ([`departed`]).
    pub departed_after: Duration,
}

/// Runs until `stop`: contends for the lease, and places while it holds it.
pub async fn run(backend: Arc<dyn Backend>, cfg: PlacementConfig, stop: CancellationToken) {
    let (tx, mut leading) = watch::channel(false);
    let lease = tokio::spawn(lease::run(
        backend.clone(),
        lease::LeaseConfig {
            name: "placement".into(),
            holder: cfg.node.clone(),
            duration: cfg.lease,
        },
        tx,
        stop.clone(),
    ));
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            r = async { leading.wait_for(|l| *l).await.map(|_| ()) } => if r.is_err() { break },
        }
        lead(&backend, &cfg, &mut leading, &stop).await;
    }
    let _ = lease.await;
}

/// How often the leader looks for what departed nodes left.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// Places on every change while this node leads.
async fn lead(
    backend: &Arc<dyn Backend>,
    cfg: &PlacementConfig,
    leading: &mut watch::Receiver<bool>,
    stop: &CancellationToken,
) {
    let mut changes = futures::stream::select_all([
        backend.watch(Some("Instance"), None),
        backend.watch(Some("Node"), None),
        backend.watch(Some("Item"), None),
    ]);
    let mut forgot_at: Option<tokio::time::Instant> = None;
    let mut departures = departed::Departures::default();
    loop {
        if let Err(e) = pass(backend).await {
            tracing::warn!(error = %e, "placement pass failed");
        }
        if forgot_at.is_none_or(|t| t.elapsed() >= FORGET_EVERY) {
            forgot_at = Some(tokio::time::Instant::now());
            match departed::forget_departed(backend, &mut departures, cfg.departed_after).await {
                Ok(f) if f != departed::Forgotten::default() => {
                    tracing::info!(?f, "forgot what departed nodes left in the store")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "failed to forget departed nodes"),
            }
        }
        // Let a burst of changes settle into one pass.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = async { leading.wait_for(|l| !*l).await.map(|_| ()) } => return,
            _ = changes.next() => tokio::time::sleep(Duration::from_millis(50)).await,
            _ = tokio::time::sleep(cfg.interval) => {}
        }
    }
}

/// One placement pass: read, decide, write.
pub async fn pass(backend: &Arc<dyn Backend>) -> Result<usize, StoreError> {
    let everything = Selector::everything();
    let (nodes, _) = Api::<NodeSpec>::new(backend.clone())
        .list(&everything)
        .await?;
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&everything)
        .await?;
    let api = Api::<InstanceSpec>::new(backend.clone());
    let (instances, _) = api.list(&everything).await?;
    let by_version: HashMap<(&str, &str), &Object<ItemSpec>> = items
        .iter()
        .map(|i| ((i.spec.item_id.as_str(), i.spec.version.as_str()), i))
        .collect();
    let node_views: Vec<_> = nodes.iter().map(views::node_view).collect();
    let live: Vec<&Object<InstanceSpec>> = instances
        .iter()
        .filter(|i| i.metadata.deletion_timestamp.is_none())
        .collect();
    let inst_views: Vec<_> = live
        .iter()
        .map(|i| {
            let item = by_version.get(&(i.spec.item_id.as_str(), i.spec.version.as_str()));
            views::instance_view(i, item.copied())
        })
        .collect();
    let decisions = rules::place(&node_views, &inst_views);
    // The writes go out a few at a time: each is a round trip to the store.
    let writes: Vec<_> = live
        .into_iter()
        .filter_map(|i| Some((i.clone(), decisions.get(&i.metadata.name)?.clone())))
        .map(|(i, d)| {
            let api = api.clone();
            async move {
                match d {
                    Decision::Place(node) => bind(&api, &i, &node).await,
                    Decision::Unschedulable(why) => condition(
                        &api,
                        &i,
                        ConditionStatus::False,
                        reason::UNSCHEDULABLE,
                        &why,
                    )
                    .await
                    .map(|()| false),
                    Decision::Stay => Ok(false),
                }
            }
        })
        .collect();
    let results: Vec<Result<bool, StoreError>> = futures::stream::iter(writes)
        .buffer_unordered(WRITERS)
        .collect()
        .await;
    let mut placed = 0;
    for r in results {
        placed += usize::from(r?);
    }
    Ok(placed)
}

/// Placement writes in flight at once.
const WRITERS: usize = 16;

/// Sets `spec.nodeName` (compare-and-swap) and says so in `Scheduled`; `false` when the
/// instance changed meanwhile (the next pass decides again).
async fn bind(
    api: &Api<InstanceSpec>,
    i: &Object<InstanceSpec>,
    node: &str,
) -> Result<bool, StoreError> {
    let mut o = i.clone();
    let from = o.spec.node_name.replace(node.to_string());
    match api.apply(&o).await {
        Ok(_) => {}
        Err(e) if e.is_conflict() || e.is_not_found() => return Ok(false),
        Err(e) => return Err(e),
    }
    let message = match from.filter(|f| !f.is_empty()) {
        Some(f) => {
            tracing::info!(instance = %i.metadata.name, from = %f, to = %node, "moved off a lost node");
            format!("moved from {f} (not ready) to {node}")
        }
        None => {
            tracing::info!(instance = %i.metadata.name, node = %node, "placed");
            format!("placed on {node}")
        }
    };
    condition(api, i, ConditionStatus::True, reason::PLACED, &message).await?;
    Ok(true)
}

async fn condition(
    api: &Api<InstanceSpec>,
    i: &Object<InstanceSpec>,
    status: ConditionStatus,
    why: &str,
    message: &str,
) -> Result<(), StoreError> {
    let now = chrono::Utc::now();
    match api
        .update_status(&i.metadata.name, |s| {
            s.common.set_condition(SCHEDULED, status, why, message, now);
        })
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
