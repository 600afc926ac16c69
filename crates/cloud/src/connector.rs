//! The connector: one WebSocket session with the cloud at a time, reconnected with capped
//! exponential backoff and jitter, kept alive by pings (a silent cloud is dropped). In a
//! session it sends the full unit status first, then the alerts kept while offline, then
//! deltas as the store changes and each alert as it comes; it applies every desired status
//! the cloud sends (a newer one simply supersedes: the store holds only the latest). Like any
//! other client it changes the node only by writing resources to the store.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{InstanceSpec, ItemSpec, Selector, Spec};
use aos_monitor::alerts::Fired;
use aos_reconcile::Recorder;
use aos_store::{Api, Backend};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::desired::{self, Mapping, CLOUD, MANAGED_BY};
use crate::protocol::{self, Alert, Alerts, Message, UnitStatus};
use crate::status;
use crate::tls::TlsFiles;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How the connector reaches its cloud.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    /// `wss://host:port/path` (`ws://` only for tests on loopback).
    pub url: String,
    pub tls: TlsFiles,
    pub node_id: String,
    /// The node's Node object, whose `CloudConnected` condition the connector keeps.
    pub node_name: String,
    pub mapping: Mapping,
    /// Largest message read.
    pub max_message: usize,
    /// A ping this often; a cloud silent for three of them is dropped.
    pub heartbeat: Duration,
    /// Reconnect delays: the first, doubling up to the cap (±20 % jitter).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Alerts kept while offline (the oldest dropped first, and counted).
    pub buffer: usize,
    /// How often `monitoringData` (the usage averaged since the last) is sent.
    pub monitoring: Duration,
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("failed to connect: {0}")]
    Connect(String),
    #[error("the connection failed: {0}")]
    Socket(String),
    #[error("the cloud closed the connection")]
    Closed,
    #[error("the cloud was silent for {0:?}")]
    Silent(Duration),
    #[error("store: {0}")]
    Store(#[from] aos_store::StoreError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Alerts waiting for a connection.
#[derive(Debug, Default)]
pub struct Outbox {
    alerts: VecDeque<Alert>,
    max: usize,
    /// Alerts dropped because the box was full.
    pub dropped: u64,
}

impl Outbox {
    pub fn new(max: usize) -> Self {
        Outbox {
            max: max.max(1),
            ..Outbox::default()
        }
    }

    pub fn push(&mut self, a: Alert) {
        if self.alerts.len() == self.max {
            self.alerts.pop_front();
            self.dropped += 1;
        }
        self.alerts.push_back(a);
    }

    pub fn len(&self) -> usize {
        self.alerts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.alerts.is_empty()
    }
}

/// The delay before reconnect attempt `n` (1, 2, …).
pub fn backoff(base: Duration, max: Duration, n: u32) -> Duration {
    let d = base
        .saturating_mul(1u32 << n.saturating_sub(1).min(16))
        .min(max);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    d.mul_f64(jitter)
}

/// The connector of one node.
pub struct Connector {
    config: ConnectorConfig,
    backend: Arc<dyn Backend>,
    events: Recorder,
    alerts: broadcast::Receiver<Fired>,
}

impl Connector {
    pub fn new(
        config: ConnectorConfig,
        backend: Arc<dyn Backend>,
        events: Recorder,
        alerts: broadcast::Receiver<Fired>,
    ) -> Self {
        Connector {
            config,
            backend,
            events: events.with_source("cloud"),
            alerts,
        }
    }

    /// Says on the Node whether the cloud is there: its `CloudConnected` condition, whose
    /// transition time tells since when it is away (kept across restarts while it stays away).
    async fn presence(&self, connected: bool, message: &str) {
        use aos_api::condition::{reason, CLOUD_CONNECTED};
        let (status, why) = if connected {
            (aos_api::ConditionStatus::True, reason::CONNECTED)
        } else {
            (aos_api::ConditionStatus::False, reason::DISCONNECTED)
        };
        let api = Api::<aos_api::NodeSpec>::new(self.backend.clone());
        let now = chrono::Utc::now();
        let write = api
            .update_status(&self.config.node_name, |s| {
                s.common
                    .set_condition(CLOUD_CONNECTED, status, why, message, now);
            })
            .await;
        if let Err(e) = write {
            tracing::warn!(error = %e, "failed to record the cloud's presence on the Node");
        }
    }

    /// Runs sessions until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut outbox = Outbox::new(self.config.buffer);
        let mut attempt = 0u32;
        // Not connected yet: away since now, or since it went away before a restart.
        self.presence(false, "not connected to the cloud").await;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.session(&mut outbox, &mut attempt) => r,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, url = self.config.url, "cloud session ended");
                self.presence(false, &e.to_string()).await;
            }
            attempt += 1;
            let delay = backoff(self.config.backoff_base, self.config.backoff_max, attempt);
            tracing::debug!(?delay, attempt, "reconnecting to the cloud");
            // Alerts raised meanwhile wait in the outbox.
            let until = Instant::now() + delay;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep_until(until) => break,
                    a = self.alerts.recv() => if let Ok(f) = a {
                        if let Some(a) = self.alert(&f).await {
                            outbox.push(a);
                        }
                    },
                }
            }
        }
    }

    async fn connect(&self) -> Result<Socket, SessionError> {
        let connector = if self.config.url.starts_with("wss:") {
            Some(tokio_tungstenite::Connector::Rustls(
                crate::tls::client_config(&self.config.tls)?,
            ))
        } else {
            None
        };
        let ws = WebSocketConfig::default()
            .max_message_size(Some(self.config.max_message))
            .max_frame_size(Some(self.config.max_message));
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            self.config.url.as_str(),
            Some(ws),
            true,
            connector,
        );
        let (socket, _) = tokio::time::timeout(Duration::from_secs(30), connect)
            .await
            .map_err(|_| SessionError::Connect("timed out after 30 s".into()))?
            .map_err(|e| SessionError::Connect(e.to_string()))?;
        Ok(socket)
    }

    /// The unit status of the cloud's objects now.
    async fn unit_status(&self) -> Result<UnitStatus, SessionError> {
        let sel: Selector = format!("{MANAGED_BY}={CLOUD}")
            .parse()
            .map_err(|e| SessionError::Socket(format!("{e}")))?;
        let (items, _) = Api::<ItemSpec>::new(self.backend.clone())
            .list(&sel)
            .await?;
        let (instances, _) = Api::<InstanceSpec>::new(self.backend.clone())
            .list(&sel)
            .await?;
        Ok(status::unit_status(
            &self.config.node_id,
            &items,
            &instances,
        ))
    }

    async fn session(
        &mut self,
        outbox: &mut Outbox,
        attempt: &mut u32,
    ) -> Result<(), SessionError> {
        let mut ws = self.connect().await?;
        let connected = Instant::now();
        tracing::info!(url = self.config.url, "connected to the cloud");
        *attempt = 0;
        self.presence(true, &self.config.url).await;
        let rev = self.backend.revision().await?;
        let mut changes = self.backend.watch(None, Some(rev));
        let mut sent = self.unit_status().await?;
        send(&mut ws, &Message::UnitStatus(sent.clone())).await?;
        if !outbox.is_empty() {
            let items: Vec<Alert> = outbox.alerts.drain(..).collect();
            tracing::info!(
                alerts = items.len(),
                dropped = outbox.dropped,
                "sending the alerts kept offline"
            );
            send(&mut ws, &Message::Alerts(Alerts { items })).await?;
        }
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.tick().await;
        let mut monitoring = tokio::time::interval(self.config.monitoring);
        monitoring.tick().await;
        let mut window = crate::monitoring::Averager::default();
        let mut heard = Instant::now();
        let mut dirty: Option<Instant> = None;
        loop {
            let flush_at = dirty.map(|d| d + Duration::from_millis(200));
            tokio::select! {
                m = ws.next() => {
                    heard = Instant::now();
                    match m {
                        None => return Err(SessionError::Closed),
                        Some(Err(e)) => return Err(SessionError::Socket(e.to_string())),
                        Some(Ok(Ws::Text(t))) => self.receive(t.as_str()).await,
                        Some(Ok(Ws::Close(_))) => return Err(SessionError::Closed),
                        Some(Ok(Ws::Binary(_))) => tracing::warn!("binary message from the cloud ignored"),
                        Some(Ok(_)) => {}
                    }
                }
                e = changes.next() => match e {
                    Some(Ok(e)) => {
                        sample(&mut window, &e);
                        if [ItemSpec::KIND, InstanceSpec::KIND].contains(&e.object.kind.as_str()) {
                            dirty.get_or_insert_with(Instant::now);
                        }
                    }
                    // Lost the thread of changes: the next full status says everything.
                    Some(Err(_)) | None => {
                        let rev = self.backend.revision().await?;
                        changes = self.backend.watch(None, Some(rev));
                        sent = UnitStatus::default();
                        dirty = Some(Instant::now());
                    }
                },
                _ = sleep_until(flush_at) => {
                    dirty = None;
                    let now = self.unit_status().await?;
                    if let Some(d) = status::delta(&sent, &now) {
                        send(&mut ws, &Message::UnitStatus(d)).await?;
                        sent = now;
                    }
                }
                a = self.alerts.recv() => if let Ok(f) = a {
                    if let Some(a) = self.alert(&f).await {
                        send(&mut ws, &Message::Alerts(Alerts { items: vec![a] })).await?;
                    }
                },
                _ = monitoring.tick() => {
                    if let Some(m) = window.take(&self.config.node_id) {
                        send(&mut ws, &Message::MonitoringData(m)).await?;
                    }
                }
                _ = heartbeat.tick() => {
                    let silent = heard.elapsed();
                    if silent > self.config.heartbeat * 3 {
                        return Err(SessionError::Silent(silent));
                    }
                    ws.send(Ws::Ping(Vec::new().into())).await.map_err(|e| SessionError::Socket(e.to_string()))?;
                    tracing::trace!(up = ?connected.elapsed(), "ping");
                }
            }
        }
    }

    /// Applies a desired status; a refused one changes nothing and says why.
    async fn receive(&self, text: &str) {
        let m = match protocol::parse(text, self.config.max_message) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "message from the cloud refused");
                return;
            }
        };
        let Message::DesiredStatus(d) = m else {
            tracing::warn!(
                message_type = m.type_name(),
                "message the node does not take refused"
            );
            return;
        };
        let resources = match desired::resources(&d, &self.config.mapping) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, correlation_id = d.correlation_id, "desired status refused");
                return;
            }
        };
        match crate::apply::apply(&self.backend, &resources, &self.events).await {
            Ok(a) => tracing::info!(
                correlation_id = d.correlation_id,
                created = a.created,
                updated = a.updated,
                unchanged = a.unchanged,
                deleted = a.deleted,
                conflicts = a.conflicts.len(),
                "desired status applied"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "failed to apply the desired status; the next one retries")
            }
        }
    }

    /// The cloud's form of an alert.
    async fn alert(&self, f: &Fired) -> Option<Alert> {
        let mut fields = serde_json::Map::new();
        let tag = if f.kind == InstanceSpec::KIND {
            let inst = Api::<InstanceSpec>::new(self.backend.clone())
                .get_opt(&f.name)
                .await
                .ok()??;
            fields.insert(
                "instance".into(),
                serde_json::json!({"itemId": inst.spec.item_id, "subjectId": inst.spec.subject_id, "instance": inst.spec.index}),
            );
            "instanceQuotaAlert"
        } else {
            fields.insert("nodeId".into(), self.config.node_id.clone().into());
            "systemQuotaAlert"
        };
        fields.insert("parameter".into(), f.parameter.clone().into());
        fields.insert("value".into(), serde_json::json!(f.value));
        fields.insert("state".into(), f.transition.as_str().into());
        Some(Alert {
            tag: tag.into(),
            timestamp: chrono::Utc::now(),
            fields,
        })
    }
}

/// Feeds a change of the Node or of a cloud Instance to the monitoring window.
fn sample(window: &mut crate::monitoring::Averager, e: &aos_store::WatchEvent) {
    let cloud = e.object.metadata.labels.get(MANAGED_BY).map(String::as_str) == Some(CLOUD);
    let deleted = e.type_ == aos_store::EventType::Deleted;
    match e.object.kind.as_str() {
        aos_api::NodeSpec::KIND if !deleted => {
            if let Ok(n) = aos_api::Object::<aos_api::NodeSpec>::from_dyn(&e.object) {
                window.node(&n);
            }
        }
        InstanceSpec::KIND if cloud && deleted => window.instance_deleted(&e.object.metadata.name),
        InstanceSpec::KIND if cloud => {
            if let Ok(i) = aos_api::Object::<InstanceSpec>::from_dyn(&e.object) {
                window.instance(&i);
            }
        }
        _ => {}
    }
}

async fn send(ws: &mut Socket, m: &Message) -> Result<(), SessionError> {
    ws.send(Ws::Text(m.to_json().into()))
        .await
        .map_err(|e| SessionError::Socket(e.to_string()))
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
