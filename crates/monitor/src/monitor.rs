//! The monitor task: lists the Node, Items and Instances, then follows the store's changes,
//! feeds each new usage sample to [`Alerts`] and records what fires as Events (source
//! `alerts`: a Warning when an alert is raised or continues, Normal when it falls) and on a
//! broadcast channel (the cloud connector's). Like any other client, it only reads the store;
//! a lost watch lists again.

use std::sync::Arc;
use std::time::Duration;

use aos_api::{DynObject, InstanceSpec, InvolvedObject, ItemSpec, NodeSpec, Object, Selector};
use aos_api::{Severity, Spec};
use aos_reconcile::Recorder;
use aos_store::{Api, Backend, EventType, StoreError};
use futures::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alerts, Fired};
use crate::rule::Transition;

/// Where alerts go: Events, and whoever listens (the cloud connector).
struct Sink {
    events: Recorder,
    listeners: broadcast::Sender<Fired>,
}

/// Follows the store until `stop`, recording alerts through `events` and sending them to
/// `listeners`; every `hold`, the instances' last usage is taken to hold still (see
/// [`Alerts::hold`]).
pub async fn run(
    backend: Arc<dyn Backend>,
    events: Recorder,
    listeners: broadcast::Sender<Fired>,
    hold: Duration,
    stop: CancellationToken,
) {
    let events = Sink {
        events: events.with_source("alerts"),
        listeners,
    };
    let mut alerts = Alerts::default();
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = follow(&backend, &mut alerts, &events, hold) => r,
        };
        match result {
            Err(StoreError::Gone { .. }) => tracing::debug!("the watch fell behind; listing again"),
            Err(e) => {
                tracing::warn!(error = %e, "alert monitor lost the store; retrying");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            Ok(()) => {}
        }
    }
}

/// Lists, then follows changes until the watch ends or fails.
async fn follow(
    backend: &Arc<dyn Backend>,
    alerts: &mut Alerts,
    events: &Sink,
    hold: Duration,
) -> Result<(), StoreError> {
    let all = Selector::everything();
    let (items, _) = Api::<ItemSpec>::new(backend.clone()).list(&all).await?;
    let (nodes, _) = Api::<NodeSpec>::new(backend.clone()).list(&all).await?;
    let (instances, rev) = Api::<InstanceSpec>::new(backend.clone()).list(&all).await?;
    for i in &items {
        alerts.item(i);
    }
    for n in &nodes {
        record(events, alerts.node(n));
    }
    for i in &instances {
        record(events, alerts.instance(i));
    }
    let mut watch = backend.watch(None, Some(rev));
    let mut tick = tokio::time::interval(hold.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let e = tokio::select! {
            e = watch.next() => e,
            _ = tick.tick() => {
                record(events, alerts.hold(chrono::Utc::now()));
                continue;
            }
        };
        let Some(e) = e else { break };
        let e = e?;
        let deleted = e.type_ == EventType::Deleted;
        match e.object.kind.as_str() {
            ItemSpec::KIND => {
                if let Some(i) = typed::<ItemSpec>(&e.object) {
                    if deleted {
                        alerts.item_deleted(&i);
                    } else {
                        alerts.item(&i);
                    }
                }
            }
            NodeSpec::KIND if !deleted => {
                if let Some(n) = typed::<NodeSpec>(&e.object) {
                    record(events, alerts.node(&n));
                }
            }
            InstanceSpec::KIND => {
                if deleted {
                    alerts.instance_deleted(&e.object.metadata.name);
                } else if let Some(i) = typed::<InstanceSpec>(&e.object) {
                    record(events, alerts.instance(&i));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn typed<S: Spec>(o: &DynObject) -> Option<Object<S>> {
    Object::<S>::from_dyn(o).ok()
}

fn record(sink: &Sink, fired: Vec<Fired>) {
    for f in fired {
        tracing::info!(
            kind = f.kind,
            name = f.name,
            parameter = f.parameter,
            value = f.value,
            transition = f.transition.as_str(),
            "alert"
        );
        let severity = match f.transition {
            Transition::Fall => Severity::Normal,
            Transition::Raise | Transition::Continue => Severity::Warning,
        };
        let involved = InvolvedObject {
            kind: f.kind.to_string(),
            name: f.name.clone(),
            uid: f.uid.clone(),
        };
        sink.events
            .record(involved, severity, f.reason(), f.message());
        // Nobody listening is fine: the Event holds it.
        let _ = sink.listeners.send(f);
    }
}
