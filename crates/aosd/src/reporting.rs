//! What aosd tells about itself: the Events writer, the controllers' metrics and the
//! `/metrics` endpoint, the alert monitor, and the cloud connector (which also takes the
//! desired status in). Started around the controllers; the Events writer stops last, so
//! that what the controllers recorded last is stored.

use std::sync::Arc;

use anyhow::Context as _;
use aos_monitor::alerts::Fired;
use aos_reconcile::{ControllerMetrics, EventsConfig, Recorder};
use aos_store::Backend;
use tokio::sync::broadcast;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics;

/// The shared parts controllers and reporters use.
pub struct Reporting {
    pub events: Recorder,
    pub metrics: ControllerMetrics,
    alerts: broadcast::Sender<Fired>,
    writer_stop: CancellationToken,
    writer: JoinHandle<()>,
}

impl Reporting {
    /// Starts the Events writer and, when configured, the metrics endpoint.
    pub async fn start(
        c: &Config,
        backend: &Arc<dyn Backend>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Reporting> {
        let (events, writer) = aos_reconcile::events::channel(
            backend.clone(),
            EventsConfig {
                max: c.events.max,
                ttl: c.events.ttl.0,
                ..EventsConfig::default()
            },
        );
        let writer_stop = CancellationToken::new();
        let writer = tokio::spawn(writer.run(writer_stop.clone()));
        let controller_metrics = ControllerMetrics::default();
        if c.metrics.enabled {
            let m = Arc::new(metrics::Metrics::new(
                backend.clone(),
                &controller_metrics,
                events.clone(),
            ));
            let (addr, stop) = (c.metrics.addr()?, shutdown.clone());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("failed to listen for metrics on {addr}"))?;
            tasks.spawn(async move {
                if let Err(e) = metrics::serve(listener, m, stop).await {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            });
        }
        let (alerts, _) = broadcast::channel(256);
        Ok(Reporting {
            events,
            metrics: controller_metrics,
            alerts,
            writer_stop,
            writer,
        })
    }

    /// Starts the alert monitor and, when configured, the cloud connector of `node_id`.
    pub fn spawn_watchers(
        &self,
        c: &Config,
        node_id: &str,
        backend: &Arc<dyn Backend>,
        tasks: &mut JoinSet<()>,
        shutdown: &CancellationToken,
    ) {
        tasks.spawn(aos_monitor::monitor::run(
            backend.clone(),
            self.events.clone(),
            self.alerts.clone(),
            c.runtimes.container.usage_interval.0,
            shutdown.clone(),
        ));
        if c.cloud.enabled {
            let connector = aos_cloud::connector::Connector::new(
                c.cloud
                    .connector(node_id, &aos_node_controller::host::object_name(node_id)),
                backend.clone(),
                self.events.clone(),
                self.alerts.subscribe(),
            );
            tasks.spawn(connector.run(shutdown.clone()));
        }
    }

    /// Stores what is still queued, after every other task has stopped.
    pub async fn finish(self) {
        self.writer_stop.cancel();
        let _ = self.writer.await;
    }
}
