//! Events against the in-memory store: repeats counted in one Event, distinct ones apart,
//! names that stay valid, pruning by age and number, drops when the writer is behind, and the
//! runtime's Warning for a failed reconcile.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aos_api::{EventSpec, InvolvedObject, ItemSpec, Object, Selector, Severity};
use aos_reconcile::events::{self, event_name, EventsConfig};
use aos_reconcile::{Action, Context, Controller, ControllerConfig, Reason, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use chrono::Utc;
use tokio_util::sync::CancellationToken;

fn store() -> Arc<dyn Backend> {
    Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap())
}

fn pod(name: &str) -> InvolvedObject {
    InvolvedObject {
        kind: "Instance".into(),
        name: name.into(),
        uid: "u-1".into(),
    }
}

async fn listed(api: &Api<EventSpec>) -> Vec<Object<EventSpec>> {
    api.list(&Selector::default()).await.unwrap().0
}

/// Waits (real time, at most 10 s) until the store holds `n` Events whose counts add to `sum`.
async fn until_stored(api: &Api<EventSpec>, n: usize, sum: u32) -> Vec<Object<EventSpec>> {
    for _ in 0..1000 {
        let all = listed(api).await;
        if all.len() == n && all.iter().map(|e| e.spec.count).sum::<u32>() == sum {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "expected {n} events counting {sum}, have {:?}",
        listed(api).await
    );
}

#[tokio::test]
async fn repeats_of_one_event_are_counted_in_one_object_and_others_stay_apart() {
    let backend = store();
    let api = Api::<EventSpec>::new(backend.clone());
    let (rec, writer) = events::channel(backend, EventsConfig::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer.run(stop.clone()));
    let rec = rec.with_source("instance-controller");
    for _ in 0..3 {
        rec.record(
            pod("web"),
            Severity::Warning,
            "Error",
            "exited with 1".into(),
        );
    }
    rec.record(
        pod("web"),
        Severity::Normal,
        "Started",
        "task started".into(),
    );
    rec.record(
        pod("db"),
        Severity::Warning,
        "Error",
        "exited with 1".into(),
    );
    let all = until_stored(&api, 3, 5).await;
    let web = all
        .iter()
        .find(|e| e.spec.involved_object.name == "web" && e.spec.reason == "Error")
        .unwrap();
    assert_eq!(web.spec.count, 3);
    assert_eq!(web.spec.severity, Severity::Warning);
    assert_eq!(web.spec.source, "instance-controller");
    assert!(web.spec.first_timestamp <= web.spec.last_timestamp);
    assert_eq!(web.spec.involved_object.uid, "u-1");
    assert_eq!(rec.dropped(), 0);
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn the_count_goes_on_after_a_new_writer_starts_on_the_same_store() {
    let backend = store();
    let api = Api::<EventSpec>::new(backend.clone());
    for round in 1..=2u32 {
        let (rec, writer) = events::channel(backend.clone(), EventsConfig::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(writer.run(stop.clone()));
        rec.record(
            pod("web"),
            Severity::Warning,
            "OOMKilled",
            "out of memory".into(),
        );
        until_stored(&api, 1, round).await;
        stop.cancel();
        task.await.unwrap();
    }
}

#[tokio::test]
async fn what_is_queued_at_shutdown_is_still_written() {
    let backend = store();
    let api = Api::<EventSpec>::new(backend.clone());
    let (rec, writer) = events::channel(backend, EventsConfig::default());
    for i in 0..5 {
        rec.record(
            pod(&format!("i{i}")),
            Severity::Normal,
            "Removed",
            "gone".into(),
        );
    }
    let stop = CancellationToken::new();
    stop.cancel();
    writer.run(stop).await;
    assert_eq!(listed(&api).await.len(), 5);
}

#[tokio::test]
async fn a_full_queue_drops_events_and_counts_them() {
    let (rec, _writer) = events::channel(
        store(),
        EventsConfig {
            queue: 2,
            ..EventsConfig::default()
        },
    );
    for _ in 0..5 {
        rec.record(
            pod("web"),
            Severity::Normal,
            "Started",
            "task started".into(),
        );
    }
    assert_eq!(rec.dropped(), 3);
    // A disabled recorder neither stores nor counts.
    let off = aos_reconcile::Recorder::disabled();
    off.record(pod("web"), Severity::Normal, "Started", "x".into());
    assert_eq!(off.dropped(), 0);
}

#[tokio::test]
async fn names_are_stable_valid_and_short_enough_for_any_object_name() {
    let long = "a".repeat(253);
    for name in ["web", long.as_str(), "x-.y"] {
        let n = event_name(&pod(name), Severity::Warning, "Error", "m");
        assert_eq!(n, event_name(&pod(name), Severity::Warning, "Error", "m"));
        assert_ne!(n, event_name(&pod(name), Severity::Warning, "Error", "m2"));
        assert_ne!(n, event_name(&pod(name), Severity::Normal, "Error", "m"));
        let mut errors = Vec::new();
        aos_api::validate::check_name("metadata.name", &n, &mut errors);
        assert!(errors.is_empty(), "{n}: {errors:?}");
    }
}

#[tokio::test]
async fn a_long_message_is_cut_to_the_limit_and_still_stored() {
    let backend = store();
    let api = Api::<EventSpec>::new(backend.clone());
    let (rec, writer) = events::channel(backend, EventsConfig::default());
    rec.record(pod("web"), Severity::Warning, "Error", "é".repeat(4000));
    let stop = CancellationToken::new();
    stop.cancel();
    writer.run(stop).await;
    let all = listed(&api).await;
    assert_eq!(all.len(), 1);
    assert!(all[0].spec.message.len() <= aos_api::MAX_EVENT_MESSAGE);
    assert!(all[0].spec.message.ends_with("..."));
}

fn stored(name: &str, age_s: i64) -> Object<EventSpec> {
    let at = Utc::now() - chrono::Duration::seconds(age_s);
    Object::new(
        name,
        EventSpec {
            involved_object: pod(name),
            severity: Severity::Normal,
            reason: "Started".into(),
            message: String::new(),
            count: 1,
            first_timestamp: at,
            last_timestamp: at,
            source: String::new(),
        },
    )
}

#[tokio::test]
async fn pruning_removes_expired_events_then_the_oldest_beyond_the_limit() {
    let api = Api::<EventSpec>::new(store());
    for (name, age) in [("e1", 7200), ("e2", 50), ("e3", 40), ("e4", 30), ("e5", 20)] {
        api.apply(&stored(name, age)).await.unwrap();
    }
    let config = EventsConfig {
        max: 3,
        ttl: Duration::from_secs(3600),
        ..EventsConfig::default()
    };
    // e1 is past the ttl; of the four left, the oldest (e2) is beyond the limit of three.
    assert_eq!(events::prune(&api, &config, Utc::now()).await.unwrap(), 2);
    let mut left: Vec<String> = listed(&api)
        .await
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    left.sort();
    assert_eq!(left, ["e3", "e4", "e5"]);
    // Nothing more to do: pruning again removes nothing.
    assert_eq!(events::prune(&api, &config, Utc::now()).await.unwrap(), 0);
}

#[derive(Debug, thiserror::Error)]
#[error("the disk is full")]
struct DiskFull;

impl Reason for DiskFull {
    fn reason(&self) -> &'static str {
        "NotEnoughSpace"
    }
}

struct AlwaysFails;

impl Reconciler for AlwaysFails {
    type Kind = ItemSpec;
    type Error = DiskFull;

    async fn apply(
        &self,
        _: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, DiskFull> {
        Err(DiskFull)
    }

    async fn cleanup(
        &self,
        _: Arc<Object<ItemSpec>>,
        _: &Context<ItemSpec>,
    ) -> Result<Action, DiskFull> {
        Ok(Action::AwaitChange)
    }
}

#[tokio::test]
async fn a_failed_reconcile_is_recorded_as_a_warning_about_its_object() {
    let backend = store();
    let items = Api::<ItemSpec>::new(backend.clone());
    let item = Object::new(
        "hello-1",
        ItemSpec {
            item_id: "hello".into(),
            version: "1".into(),
            source: aos_api::ItemSource {
                registry: Some("127.0.0.1:5000/hello:1".into()),
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let uid = items.apply(&item).await.unwrap().0.metadata.uid.unwrap();
    let (rec, writer) = events::channel(backend.clone(), EventsConfig::default());
    let stop = CancellationToken::new();
    let writer = tokio::spawn(writer.run(stop.clone()));
    let config = ControllerConfig {
        events: rec,
        backoff: aos_reconcile::Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(20),
            ..Default::default()
        },
        ..ControllerConfig::default()
    };
    let controller =
        tokio::spawn(Controller::new(AlwaysFails, backend.clone(), config).run(stop.clone()));
    let api = Api::<EventSpec>::new(backend);
    let mut found = None;
    for _ in 0..1000 {
        if let Some(e) = listed(&api).await.into_iter().find(|e| e.spec.count >= 2) {
            found = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = found.expect("a Warning counted twice within 10 s");
    assert_eq!(e.spec.severity, Severity::Warning);
    assert_eq!(e.spec.reason, "NotEnoughSpace");
    assert_eq!(e.spec.message, "the disk is full");
    assert_eq!(e.spec.source, "item-controller");
    assert_eq!(
        e.spec.involved_object,
        InvolvedObject {
            kind: "Item".into(),
            name: "hello-1".into(),
            uid
        }
    );
    stop.cancel();
    controller.await.unwrap();
    writer.await.unwrap();
}
