//! Events: the controllers' record of what happened to their objects. A [`Recorder`] hands each
//! event to one [`EventWriter`] through a bounded queue, so that recording never blocks or fails
//! a reconcile (what does not fit is counted as dropped). The writer folds repeats into one
//! Event object per (object, type, reason, message), counting them, and prunes the Events by
//! age and by number.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_api::{EventSpec, InvolvedObject, Object, Severity, Spec, MAX_EVENT_MESSAGE};
use aos_store::{Api, Backend, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How many Events are kept, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventsConfig {
    /// Most Events in the store; the ones seen longest ago go first.
    pub max: usize,
    /// An Event not seen again for this long is removed (Kubernetes keeps them an hour).
    pub ttl: Duration,
    /// Events waiting for the writer; more are dropped and counted.
    pub queue: usize,
    /// How often the writer prunes when nothing else makes it.
    pub prune_every: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max: 1000,
            ttl: Duration::from_secs(3600),
            queue: 256,
            prune_every: Duration::from_secs(60),
        }
    }
}

struct Record {
    involved: InvolvedObject,
    severity: Severity,
    reason: String,
    message: String,
    source: Arc<str>,
    at: DateTime<Utc>,
}

/// Records events for one component. Cheap to clone; a disabled one records nothing.
#[derive(Clone)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Record>>,
    source: Arc<str>,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("source", &self.source)
            .field("enabled", &self.tx.is_some())
            .finish()
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::disabled()
    }
}

impl Recorder {
    /// A recorder that drops everything (tests, tools).
    pub fn disabled() -> Self {
        Recorder {
            tx: None,
            source: Arc::from(""),
            dropped: Arc::default(),
        }
    }

    /// The same writer, for another component (`instance-controller`, `alerts`…).
    pub fn with_source(&self, source: &str) -> Self {
        Recorder {
            source: Arc::from(source),
            ..self.clone()
        }
    }

    /// The component this recorder writes as.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A routine event about `obj`.
    pub fn normal<S: Spec>(&self, obj: &Object<S>, reason: &str, message: impl Into<String>) {
        self.event(obj, Severity::Normal, reason, message);
    }

    /// An event about `obj` that needs an operator's eye.
    pub fn warning<S: Spec>(&self, obj: &Object<S>, reason: &str, message: impl Into<String>) {
        self.event(obj, Severity::Warning, reason, message);
    }

    /// An event about `obj`.
    pub fn event<S: Spec>(
        &self,
        obj: &Object<S>,
        severity: Severity,
        reason: &str,
        message: impl Into<String>,
    ) {
        self.record(involved(obj), severity, reason, message.into());
    }

    /// Queues one event; never waits. A full queue drops it and counts the drop.
    pub fn record(
        &self,
        involved: InvolvedObject,
        severity: Severity,
        reason: &str,
        message: String,
    ) {
        let Some(tx) = &self.tx else { return };
        tracing::debug!(
            kind = involved.kind,
            name = involved.name,
            severity = severity.as_str(),
            reason,
            message,
            "event"
        );
        let record = Record {
            involved,
            severity,
            reason: reason.to_string(),
            message: cut(message),
            source: self.source.clone(),
            at: Utc::now(),
        };
        if tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the writer was behind or gone.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The object an event about `obj` names.
pub fn involved<S: Spec>(obj: &Object<S>) -> InvolvedObject {
    InvolvedObject {
        kind: S::KIND.to_string(),
        name: obj.metadata.name.clone(),
        uid: obj.metadata.uid.clone().unwrap_or_default(),
    }
}

/// Cuts a message to [`MAX_EVENT_MESSAGE`] bytes on a character boundary.
fn cut(mut message: String) -> String {
    if message.len() > MAX_EVENT_MESSAGE {
        let mut end = MAX_EVENT_MESSAGE - 3;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("...");
    }
    message
}

/// A recorder and the writer that stores what it records; run the writer once.
pub fn channel(backend: Arc<dyn Backend>, config: EventsConfig) -> (Recorder, EventWriter) {
    let (tx, rx) = mpsc::channel(config.queue.max(1));
    let dropped = Arc::<AtomicU64>::default();
    let recorder = Recorder {
        tx: Some(tx),
        source: Arc::from(""),
        dropped: dropped.clone(),
    };
    let writer = EventWriter {
        rx,
        api: Api::new(backend),
        config,
    };
    (recorder, writer)
}

/// The name of the Event that counts the repeats of one (object, type, reason, message):
/// the object's name and a digest of the rest, so that a restart of the agent counts on.
pub fn event_name(
    involved: &InvolvedObject,
    severity: Severity,
    reason: &str,
    message: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        involved.kind.as_str(),
        involved.name.as_str(),
        involved.uid.as_str(),
        severity.as_str(),
        reason,
        message,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    // A name is a DNS subdomain of at most 253 characters: keep room for ".<16 hex>".
    let mut prefix: String = involved.name.chars().take(200).collect();
    while prefix.ends_with(['.', '-']) {
        prefix.pop();
    }
    if prefix.is_empty() {
        hex
    } else {
        format!("{prefix}.{hex}")
    }
}

/// Stores recorded events and prunes old ones.
pub struct EventWriter {
    rx: mpsc::Receiver<Record>,
    api: Api<EventSpec>,
    config: EventsConfig,
}

impl EventWriter {
    /// Writes events until `stop`, then writes what is still queued.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut prune = tokio::time::interval(self.config.prune_every);
        prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut created = 0usize;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                Some(r) = self.rx.recv() => {
                    match self.write(&r).await {
                        Ok(true) => created += 1,
                        Ok(false) => {}
                        Err(e) => tracing::warn!(error = %e, reason = r.reason, "failed to store an event"),
                    }
                    // Prune before the store holds much more than `max`.
                    if created > self.config.max / 10 {
                        created = 0;
                        self.prune_logged().await;
                    }
                }
                _ = prune.tick() => self.prune_logged().await,
            }
        }
        while let Ok(r) = self.rx.try_recv() {
            if let Err(e) = self.write(&r).await {
                tracing::debug!(error = %e, "failed to store an event at shutdown");
            }
        }
    }

    /// Stores one event: a new Event, or one more count on the Event of its repeats.
    /// `Ok(true)` when it made a new Event.
    async fn write(&self, r: &Record) -> Result<bool, StoreError> {
        let name = event_name(&r.involved, r.severity, &r.reason, &r.message);
        let mut attempt = 0;
        loop {
            let result = match self.api.get_opt(&name).await? {
                Some(mut e) => {
                    e.spec.count = e.spec.count.saturating_add(1);
                    e.spec.last_timestamp = e.spec.last_timestamp.max(r.at);
                    self.api.apply(&e).await.map(|_| false)
                }
                None => {
                    let spec = EventSpec {
                        involved_object: r.involved.clone(),
                        severity: r.severity,
                        reason: r.reason.clone(),
                        message: r.message.clone(),
                        count: 1,
                        first_timestamp: r.at,
                        last_timestamp: r.at,
                        source: r.source.to_string(),
                    };
                    self.api
                        .apply(&Object::new(&name, spec))
                        .await
                        .map(|_| true)
                }
            };
            match result {
                Err(e) if e.is_conflict() && attempt < 3 => attempt += 1,
                other => return other,
            }
        }
    }

    async fn prune_logged(&self) {
        match prune(&self.api, &self.config, Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "events pruned"),
            Err(e) => tracing::warn!(error = %e, "failed to prune events"),
        }
    }
}

/// Removes the Events not seen for `ttl`, then the ones seen longest ago beyond `max`.
/// Returns how many it removed.
pub async fn prune(
    api: &Api<EventSpec>,
    config: &EventsConfig,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let (mut events, _) = api.list(&aos_api::Selector::everything()).await?;
    let ttl = chrono::Duration::from_std(config.ttl).unwrap_or(chrono::Duration::MAX);
    events.sort_by_key(|e| e.spec.last_timestamp);
    let expired = events
        .iter()
        .take_while(|e| now - e.spec.last_timestamp > ttl)
        .count();
    let over = events.len().saturating_sub(config.max);
    let mut removed = 0;
    for e in events.iter().take(expired.max(over)) {
        match api.delete(e.name()).await {
            Ok(_) => removed += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}
