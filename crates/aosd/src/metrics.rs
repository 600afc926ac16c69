//! The Prometheus endpoint (`[metrics]`, off by default, loopback by default): the controller
//! runtime's metrics as they are counted, and at each scrape the node's and the instances'
//! usage, the store's objects and health, and the events the writer dropped, read from the
//! store (so an instance that is gone leaves no series behind).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use aos_api::{InstanceSpec, NodeSpec, Selector, KINDS};
use aos_reconcile::{ControllerMetrics, Recorder};
use aos_store::{Api, Backend, StoreError};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    instance: String,
    item: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    instance: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

/// Gauges refilled from the store at each scrape.
#[derive(Default)]
struct FromStore {
    node_cpu_percent: FloatGauge,
    node_ram_used: Gauge,
    node_ram_total: Gauge,
    partition_used: Family<PartitionLabels, Gauge>,
    partition_size: Family<PartitionLabels, Gauge>,
    cpu_percent: Family<InstanceLabels, FloatGauge>,
    ram: Family<InstanceLabels, Gauge>,
    state_bytes: Family<InstanceLabels, Gauge>,
    storage_bytes: Family<InstanceLabels, Gauge>,
    rx_bytes: Family<InstanceLabels, Gauge>,
    tx_bytes: Family<InstanceLabels, Gauge>,
    restarts: Family<InstanceLabels, Gauge>,
    instance_state: Family<StateLabels, Gauge>,
    objects: Family<KindLabels, Gauge>,
    revision: Gauge,
    damaged: Gauge,
    store_failing: Gauge,
    events_dropped: Counter,
}

/// Everything `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    gauges: FromStore,
    backend: Arc<dyn Backend>,
    events: Recorder,
    /// Serialises scrapes (each refills the gauges).
    scrape: tokio::sync::Mutex<()>,
    dropped_seen: Mutex<u64>,
}

impl Metrics {
    /// The registry with the controllers' metrics and the gauges read at each scrape.
    pub fn new(
        backend: Arc<dyn Backend>,
        controllers: &ControllerMetrics,
        events: Recorder,
    ) -> Self {
        let mut registry = Registry::default();
        controllers.register(&mut registry);
        let g = FromStore::default();
        let r = registry.sub_registry_with_prefix("aosd");
        r.register(
            "node_cpu_percent",
            "CPU use of the whole node, percent",
            g.node_cpu_percent.clone(),
        );
        r.register(
            "node_ram_used_bytes",
            "RAM in use (MemTotal - MemFree - Buffers - Cached - SReclaimable)",
            g.node_ram_used.clone(),
        );
        r.register(
            "node_ram_total_bytes",
            "RAM of the node",
            g.node_ram_total.clone(),
        );
        r.register(
            "node_partition_used_bytes",
            "Bytes used on each configured partition",
            g.partition_used.clone(),
        );
        r.register(
            "node_partition_size_bytes",
            "Size of each configured partition",
            g.partition_size.clone(),
        );
        r.register(
            "instance_cpu_percent",
            "CPU use of an instance, percent of one core",
            g.cpu_percent.clone(),
        );
        r.register(
            "instance_ram_bytes",
            "Memory of an instance's cgroup",
            g.ram.clone(),
        );
        r.register(
            "instance_state_bytes",
            "Bytes of an instance's state",
            g.state_bytes.clone(),
        );
        r.register(
            "instance_storage_bytes",
            "Bytes of an instance's storage",
            g.storage_bytes.clone(),
        );
        r.register(
            "instance_rx_bytes",
            "Bytes an instance received on its network",
            g.rx_bytes.clone(),
        );
        r.register(
            "instance_tx_bytes",
            "Bytes an instance sent on its network",
            g.tx_bytes.clone(),
        );
        r.register(
            "instance_restarts",
            "Restarts of an instance in its current generation",
            g.restarts.clone(),
        );
        r.register(
            "instance_state",
            "1 for the state each instance is in",
            g.instance_state.clone(),
        );
        r.register(
            "store_objects",
            "Objects in the store, by kind",
            g.objects.clone(),
        );
        r.register("store_revision", "The store's revision", g.revision.clone());
        r.register(
            "store_damaged_records",
            "Records the store found damaged and quarantined",
            g.damaged.clone(),
        );
        r.register(
            "store_failing",
            "1 while the store's writes fail",
            g.store_failing.clone(),
        );
        r.register(
            "events_dropped",
            "Events dropped because the writer was behind",
            g.events_dropped.clone(),
        );
        Metrics {
            registry,
            gauges: g,
            backend,
            events,
            scrape: tokio::sync::Mutex::new(()),
            dropped_seen: Mutex::new(0),
        }
    }

    /// The text exposition of every metric, read now.
    pub async fn scrape(&self) -> Result<String, StoreError> {
        let _one = self.scrape.lock().await;
        self.refill().await?;
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .map_err(|e| StoreError::Internal(format!("failed to encode the metrics: {e}")))?;
        Ok(out)
    }

    async fn refill(&self) -> Result<(), StoreError> {
        let g = &self.gauges;
        let all = Selector::everything();
        let (nodes, _) = Api::<NodeSpec>::new(self.backend.clone())
            .list(&all)
            .await?;
        g.partition_used.clear();
        g.partition_size.clear();
        for n in &nodes {
            g.node_ram_total.set(n.status.total_ram as i64);
            let Some(u) = &n.status.usage else { continue };
            g.node_cpu_percent.set(u.cpu_percent);
            g.node_ram_used.set(u.ram_used as i64);
            for p in &u.partitions {
                let l = PartitionLabels {
                    partition: p.name.clone(),
                };
                g.partition_used.get_or_create(&l).set(p.used_size as i64);
                g.partition_size.get_or_create(&l).set(p.total_size as i64);
            }
        }
        let (instances, _) = Api::<InstanceSpec>::new(self.backend.clone())
            .list(&all)
            .await?;
        for f in [
            &g.ram,
            &g.state_bytes,
            &g.storage_bytes,
            &g.rx_bytes,
            &g.tx_bytes,
            &g.restarts,
        ] {
            f.clear();
        }
        g.cpu_percent.clear();
        g.instance_state.clear();
        for i in &instances {
            let l = InstanceLabels {
                instance: i.name().to_string(),
                item: i.spec.item_id.clone(),
                version: i.spec.version.clone(),
            };
            let state = serde_json::to_value(i.status.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            g.instance_state
                .get_or_create(&StateLabels {
                    instance: l.instance.clone(),
                    state,
                })
                .set(1);
            g.restarts.get_or_create(&l).set(i.status.restarts as i64);
            let Some(u) = &i.status.usage else { continue };
            g.cpu_percent.get_or_create(&l).set(u.cpu_percent);
            for (f, v) in [
                (&g.ram, u.ram_bytes),
                (&g.state_bytes, u.state_bytes),
                (&g.storage_bytes, u.storage_bytes),
                (&g.rx_bytes, u.rx_bytes),
                (&g.tx_bytes, u.tx_bytes),
            ] {
                f.get_or_create(&l).set(v as i64);
            }
        }
        for k in KINDS.iter() {
            let n = match k.kind {
                "Node" => nodes.len(),
                "Instance" => instances.len(),
                kind => self.backend.list(kind, &all).await?.items.len(),
            };
            g.objects
                .get_or_create(&KindLabels {
                    kind: k.kind.to_string(),
                })
                .set(n as i64);
        }
        g.revision.set(self.backend.revision().await? as i64);
        let health = self.backend.health();
        g.damaged.set(health.damaged.len() as i64);
        g.store_failing.set(i64::from(health.failure.is_some()));
        let dropped = self.events.dropped();
        let mut seen = self.dropped_seen.lock().unwrap_or_else(|e| e.into_inner());
        g.events_dropped.inc_by(dropped.saturating_sub(*seen));
        *seen = dropped;
        Ok(())
    }
}

/// Serves `/metrics` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> std::io::Result<()> {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics served at /metrics");
    }
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics.scrape().await {
                    Ok(text) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
