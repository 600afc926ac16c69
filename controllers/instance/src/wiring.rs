//! The Instance controller as a whole: its watches (an Item wakes the Instances of its item
//! id, a Network those on it, the cloud's coming and going all of them), the task events that wake an Instance when its task exits or
//! hits its memory limit, and the sweep of containers whose Instance is gone.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{InstanceSpec, ItemSpec, NetworkSpec, NodeSpec, Object};
use aos_containerd::TaskEvent;
use aos_reconcile::{Controller, ControllerConfig, Waker};
use aos_store::{Api, Backend};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::{InstanceEnv, InstanceError, InstanceReconciler, INSTANCE_LABEL, NETWORK_LABEL};

/// The controller, watching Items and Networks as well as Instances.
pub fn controller(
    env: Arc<InstanceEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<InstanceReconciler> {
    let controller = Controller::new(InstanceReconciler::new(env.clone()), backend, config);
    let by_item = controller.reader();
    let by_network = controller.reader();
    let every = controller.reader();
    // The cloud's presence (the Node's CloudConnected condition) decides offlineTTL: a
    // change of it wakes every instance; the Node's other writes (usage) wake none.
    let cloud = std::sync::Mutex::new(None);
    let controller = controller
        .watches::<ItemSpec>(move |item: &Object<ItemSpec>| {
            by_item
                .list()
                .iter()
                .filter(|i| i.spec.item_id == item.spec.item_id)
                .map(|i| i.name().to_string())
                .collect()
        })
        .watches::<NetworkSpec>(move |n: &Object<NetworkSpec>| {
            by_network
                .list()
                .iter()
                .filter(|i| {
                    i.spec
                        .network
                        .as_ref()
                        .is_some_and(|x| x.network_id == n.name())
                })
                .map(|i| i.name().to_string())
                .collect()
        })
        .watches::<NodeSpec>(move |n: &Object<NodeSpec>| {
            let now = n
                .status
                .common
                .condition(aos_api::condition::CLOUD_CONNECTED)
                .map(|c| (c.status, c.last_transition_time));
            let mut was = cloud.lock().unwrap_or_else(|e| e.into_inner());
            if *was == now {
                return Vec::new();
            }
            *was = now;
            every.list().iter().map(|i| i.name().to_string()).collect()
        });
    env.probes.set_waker(controller.waker());
    controller
}

/// Runs the Instance controller until `stop`: containers of Instances that are gone are
/// removed first (only on an intact store), then Instances are reconciled, woken by their
/// tasks' events as well as by the store.
pub async fn run(
    env: Arc<InstanceEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    stop: CancellationToken,
) {
    sweep(&env, &backend).await;
    // And again at every resync: an Instance deleted elsewhere while this node was cut off
    // leaves nothing to wake its cleanup here.
    let sweeper = {
        let (env, backend, every, stop) =
            (env.clone(), backend.clone(), config.resync, stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(every) => sweep(&env, &backend).await,
                }
            }
        })
    };
    let controller = controller(env.clone(), backend, config);
    let events = spawn_events(
        env.clone(),
        controller.waker(),
        controller.reader(),
        stop.clone(),
    );
    let sampler = tokio::spawn(crate::sampler::run(
        env,
        controller.reader(),
        controller.waker(),
        stop.clone(),
    ));
    controller.run(stop).await;
    let _ = events.await;
    let _ = sampler.await;
    let _ = sweeper.await;
}

/// One sweep of orphan containers, logged. A container of an Instance the store lost would look
/// orphaned: only an intact store is swept.
async fn sweep(env: &InstanceEnv, backend: &Arc<dyn Backend>) {
    if !backend.health().damaged.is_empty() {
        tracing::warn!("the store has damaged records: containers of unknown instances are kept");
        return;
    }
    match sweep_orphans(env, backend.clone()).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed containers of deleted instances"),
        Err(e) => tracing::warn!(error = %e, "failed to sweep orphan containers"),
    }
}

/// Feeds task exits and OOMs to the controller: a task's event wakes its Instance at once.
/// When the stream ends (containerd restarted), it subscribes again and wakes every instance
/// once, so that exits missed meanwhile are seen.
pub fn spawn_events(
    env: Arc<InstanceEnv>,
    waker: Waker,
    reader: aos_reconcile::Reader<InstanceSpec>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            match env.containers.events().await {
                Ok(mut events) => {
                    if !first {
                        tracing::info!("task events again: looking at every instance");
                        for k in reader.keys() {
                            waker.wake(&k);
                        }
                    }
                    first = false;
                    loop {
                        let ev = tokio::select! {
                            _ = stop.cancelled() => return,
                            ev = events.next() => ev,
                        };
                        let Some(ev) = ev else { break };
                        if let TaskEvent::Oom { id } = &ev {
                            env.oom
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(id.clone());
                        }
                        tracing::debug!(event = ?ev, "task event");
                        waker.wake(ev.id());
                    }
                    tracing::warn!("the task event stream ended; subscribing again");
                }
                Err(e) => tracing::warn!(error = %e, "no task events yet; retrying"),
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    })
}

/// Stops and removes our containers whose Instance is gone (deleted while aosd was down, or,
/// in a unit, deleted by its new node while this one was away); their data stays. The
/// containers are listed before the Instances, so that a container made meanwhile (always for
/// an Instance that exists) is never taken for an orphan: this may run beside the controller.
pub async fn sweep_orphans(
    env: &InstanceEnv,
    backend: Arc<dyn Backend>,
) -> Result<usize, InstanceError> {
    let containers = env.containers.list().await?;
    let api = Api::<InstanceSpec>::new(backend);
    let (items, _) = api.list(&Default::default()).await?;
    let wanted: HashSet<String> = items.iter().map(|i| i.name().to_string()).collect();
    let mut n = 0;
    for c in containers {
        if !c.labels.contains_key(INSTANCE_LABEL) || wanted.contains(&c.id) {
            continue;
        }
        tracing::info!(container = %c.id, "removing a container whose Instance is gone");
        env.stop(&c.id, env.defaults.stop_grace).await?;
        if let (Some(net), Some(nets)) = (c.labels.get(NETWORK_LABEL), &env.networks) {
            if let Err(e) = nets.detach(&c.id, net).await {
                tracing::warn!(container = %c.id, error = %e, "failed to detach a removed container");
            }
        }
        env.host.clear_run(&c.id)?;
        n += 1;
    }
    Ok(n)
}
