//! The conformance suite every backend must pass: call [`run`] with a factory that makes a fresh,
//! empty backend whose event log keeps `event_log_limit` events.
// A test suite (run by tests of each implementation): a failed unwrap is a failed case, and
// each case names itself on stderr.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::Duration;

use aos_api::{DynObject, ObjectMeta, Revision, Selector, API_VERSION};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use serde_json::json;

use crate::{Backend, EventType, Outcome, StoreError, WatchEvent};

mod delete;
use delete::{delete_many, finalizers, terminating};

/// How the suite wants a backend made.
#[derive(Clone, Copy, Debug)]
pub struct SuiteOptions {
    pub event_log_limit: u64,
}

type Case = fn(Arc<dyn Backend>) -> BoxFuture<'static, ()>;

fn obj(kind: &str, name: &str, spec: serde_json::Value) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: kind.into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        spec,
        status: serde_json::Value::Null,
    }
}

async fn next(
    s: &mut futures::stream::BoxStream<'static, Result<WatchEvent, StoreError>>,
) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(5), s.next())
        .await
        .expect("a watch event within 5 s")
        .expect("the watch stream to stay open")
        .expect("a watch event, not an error")
}

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create sets server fields and get returns them", |b| {
        create_and_get(b).boxed()
    }),
    ("every change takes the next revision", |b| {
        revisions(b).boxed()
    }),
    ("a stale resourceVersion is a conflict", |b| cas(b).boxed()),
    ("create takes a name once", |b| create_once(b).boxed()),
    ("generation moves only with the spec", |b| {
        generation(b).boxed()
    }),
    ("status has its own write path", |b| status(b).boxed()),
    ("finalizers hold a deleted object until removed", |b| {
        finalizers(b).boxed()
    }),
    ("an object being deleted is never Ready", |b| {
        terminating(b).boxed()
    }),
    ("list filters by kind and label selector", |b| {
        list(b).boxed()
    }),
    ("watch replays from a revision then streams live", |b| {
        watch(b).boxed()
    }),
    ("a watch from now sees only later events", |b| {
        watch_now(b).boxed()
    }),
    ("dry runs change nothing", |b| dry_run(b).boxed()),
    ("a batch delete keeps its order and answers each", |b| {
        delete_many(b).boxed()
    }),
    ("concurrent writers all land with distinct revisions", |b| {
        concurrent(b).boxed()
    }),
];

/// Runs every case, each on a fresh backend, then the event-log case on one with a log of 5.
pub async fn run(factory: impl Fn(SuiteOptions) -> Arc<dyn Backend>) {
    for (name, case) in CASES {
        let backend = factory(SuiteOptions {
            event_log_limit: 10_000,
        });
        eprintln!("conformance: {name}");
        case(backend).await;
    }
    eprintln!("conformance: a watch from before the event log is Gone");
    gone(factory(SuiteOptions { event_log_limit: 5 })).await;
}

async fn create_and_get(b: Arc<dyn Backend>) {
    let a = b
        .apply(obj("Item", "a", json!({"x": 1})), false)
        .await
        .unwrap();
    assert_eq!(a.outcome, Outcome::Created);
    let m = &a.object.metadata;
    assert!(m.uid.is_some(), "uid set");
    assert_eq!(m.generation, 1);
    assert!(m.resource_version > 0);
    assert!(m.creation_timestamp.is_some());
    assert_eq!(b.get("Item", "a").await.unwrap(), a.object);
    let err = b.get("Item", "missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = b.get("Layer", "a").await.unwrap_err();
    assert!(err.is_not_found(), "kinds are separate: {err}");
}

async fn revisions(b: Arc<dyn Backend>) {
    let r0 = b.revision().await.unwrap();
    let a = b.apply(obj("Item", "a", json!({})), false).await.unwrap();
    let c = b.apply(obj("Layer", "c", json!({})), false).await.unwrap();
    assert_eq!(a.object.metadata.resource_version, r0 + 1);
    assert_eq!(c.object.metadata.resource_version, r0 + 2);
    let s = b
        .update_status("Item", "a", json!({"phase": "Ready"}), None)
        .await
        .unwrap();
    assert_eq!(s.metadata.resource_version, r0 + 3);
    assert_eq!(b.revision().await.unwrap(), r0 + 3);
    // A write that changes nothing takes no revision.
    let u = b.apply(obj("Item", "a", json!({})), false).await.unwrap();
    assert_eq!(u.outcome, Outcome::Unchanged);
    assert_eq!(b.revision().await.unwrap(), r0 + 3);
}

async fn cas(b: Arc<dyn Backend>) {
    let a = b
        .apply(obj("Item", "a", json!({"v": 1})), false)
        .await
        .unwrap()
        .object;
    let mut stale = obj("Item", "a", json!({"v": 2}));
    stale.metadata.resource_version = a.metadata.resource_version;
    let a2 = b.apply(stale.clone(), false).await.unwrap().object;
    stale.spec = json!({"v": 3});
    let err = b.apply(stale, false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(b.get("Item", "a").await.unwrap().spec, json!({"v": 2}));
    let err = b
        .update_status(
            "Item",
            "a",
            json!({"s": 1}),
            Some(a.metadata.resource_version),
        )
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    b.update_status(
        "Item",
        "a",
        json!({"s": 1}),
        Some(a2.metadata.resource_version),
    )
    .await
    .unwrap();
    let mut missing = obj("Item", "nope", json!({}));
    missing.metadata.resource_version = 7;
    assert!(b.apply(missing, false).await.unwrap_err().is_not_found());
    let err = b.delete("Item", "a", Some(1), false).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
}

async fn create_once(b: Arc<dyn Backend>) {
    let made = b
        .create(obj("Lease", "l", json!({"holder": "a"})))
        .await
        .unwrap();
    assert!(made.metadata.uid.is_some());
    assert_eq!(made.metadata.generation, 1);
    let err = b
        .create(obj("Lease", "l", json!({"holder": "b"})))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
    assert_eq!(b.get("Lease", "l").await.unwrap().spec["holder"], "a");
    // Racing creators: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move { b.create(obj("Lease", "race", json!({ "i": i }))).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        if t.await.unwrap().is_ok() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

async fn generation(b: Arc<dyn Backend>) {
    let a = b
        .apply(obj("Item", "a", json!({"v": 1})), false)
        .await
        .unwrap()
        .object;
    let mut labelled = obj("Item", "a", json!({"v": 1}));
    labelled.metadata.labels.insert("app".into(), "x".into());
    let l = b.apply(labelled, false).await.unwrap();
    assert_eq!(l.outcome, Outcome::Configured);
    assert_eq!(
        l.object.metadata.generation, 1,
        "labels do not move generation"
    );
    assert!(l.object.metadata.resource_version > a.metadata.resource_version);
    let s = b
        .update_status("Item", "a", json!({"p": 1}), None)
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, 1, "status does not move generation");
    let c = b
        .apply(obj("Item", "a", json!({"v": 2})), false)
        .await
        .unwrap()
        .object;
    assert_eq!(c.metadata.generation, 2);
    assert_eq!(c.metadata.uid, a.metadata.uid);
    assert_eq!(c.metadata.creation_timestamp, a.metadata.creation_timestamp);
    assert_eq!(c.status, json!({"p": 1}), "apply keeps the status");
    assert!(c.metadata.labels.is_empty(), "apply replaces labels");
}

async fn status(b: Arc<dyn Backend>) {
    let mut with_status = obj("Item", "a", json!({"v": 1}));
    with_status.status = json!({"phase": "Forged"});
    let a = b.apply(with_status, false).await.unwrap().object;
    assert!(
        a.status.is_null(),
        "a client cannot set status through apply"
    );
    let s = b
        .update_status("Item", "a", json!({"phase": "Ready"}), None)
        .await
        .unwrap();
    assert_eq!(s.status, json!({"phase": "Ready"}));
    assert_eq!(s.spec, json!({"v": 1}));
    let same = b
        .update_status("Item", "a", json!({"phase": "Ready"}), None)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version, s.metadata.resource_version,
        "no-op status write"
    );
    assert!(b
        .update_status("Item", "zz", json!({}), None)
        .await
        .unwrap_err()
        .is_not_found());
}

async fn list(b: Arc<dyn Backend>) {
    for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut o = obj("Item", name, json!({}));
        o.metadata.labels.insert("app".into(), app.into());
        b.apply(o, false).await.unwrap();
    }
    b.apply(obj("Items", "x", json!({})), false).await.unwrap();
    b.apply(obj("Layer", "a", json!({})), false).await.unwrap();
    let all = b.list("Item", &Selector::everything()).await.unwrap();
    let names: Vec<_> = all.items.iter().map(|o| o.metadata.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(all.revision, b.revision().await.unwrap());
    let web = b.list("Item", &"app=web".parse().unwrap()).await.unwrap();
    assert_eq!(web.items.len(), 2);
    assert!(b
        .list("Instance", &Selector::everything())
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn watch(b: Arc<dyn Backend>) {
    let start: Revision = b.revision().await.unwrap();
    b.apply(obj("Item", "a", json!({})), false).await.unwrap();
    b.apply(obj("Layer", "l", json!({})), false).await.unwrap();
    let mut items = b.watch(Some("Item"), Some(start));
    let mut all = b.watch(None, Some(start));
    let e = next(&mut items).await;
    assert_eq!(
        (e.type_, e.object.metadata.name.as_str()),
        (EventType::Added, "a")
    );
    assert_eq!(next(&mut all).await.object.kind, "Item");
    assert_eq!(next(&mut all).await.object.kind, "Layer");
    b.update_status("Item", "a", json!({"p": 1}), None)
        .await
        .unwrap();
    b.delete("Item", "a", None, false).await.unwrap();
    let m = next(&mut items).await;
    assert_eq!(m.type_, EventType::Modified);
    assert_eq!(m.object.status, json!({"p": 1}));
    let d = next(&mut items).await;
    assert_eq!(d.type_, EventType::Deleted);
    assert!(d.revision > m.revision);
    let mut revs = vec![];
    for _ in 0..2 {
        revs.push(next(&mut all).await.revision);
    }
    assert_eq!(
        revs,
        [m.revision, d.revision],
        "events arrive in revision order"
    );
}

async fn watch_now(b: Arc<dyn Backend>) {
    b.apply(obj("Item", "old", json!({})), false).await.unwrap();
    let mut w = b.watch(Some("Item"), None);
    b.apply(obj("Item", "new", json!({})), false).await.unwrap();
    assert_eq!(next(&mut w).await.object.metadata.name, "new");
}

async fn dry_run(b: Arc<dyn Backend>) {
    let r = b.apply(obj("Item", "a", json!({})), true).await.unwrap();
    assert_eq!(r.outcome, Outcome::Created);
    assert!(b.get("Item", "a").await.unwrap_err().is_not_found());
    b.apply(obj("Item", "a", json!({"v": 1})), false)
        .await
        .unwrap();
    let r = b
        .apply(obj("Item", "a", json!({"v": 2})), true)
        .await
        .unwrap();
    assert_eq!(r.outcome, Outcome::Configured);
    assert_eq!(r.object.spec, json!({"v": 2}));
    assert_eq!(b.get("Item", "a").await.unwrap().spec, json!({"v": 1}));
    assert!(b.delete("Item", "a", None, true).await.unwrap().is_none());
    assert!(
        b.get("Item", "a").await.is_ok(),
        "a dry-run delete keeps the object"
    );
}

async fn concurrent(b: Arc<dyn Backend>) {
    let start = b.revision().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..50 {
                let o = obj("Item", &format!("t{t}-{i}"), json!({"i": i}));
                revs.push(
                    b.apply(o, false)
                        .await
                        .unwrap()
                        .object
                        .metadata
                        .resource_version,
                );
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 400, "every write has its own revision");
    assert_eq!(b.revision().await.unwrap(), start + 400);
    assert_eq!(
        b.list("Item", &Selector::everything())
            .await
            .unwrap()
            .items
            .len(),
        400
    );
}

async fn gone(b: Arc<dyn Backend>) {
    let start = b.revision().await.unwrap();
    for i in 0..20 {
        b.apply(obj("Item", &format!("i{i}"), json!({})), false)
            .await
            .unwrap();
    }
    let mut w = b.watch(Some("Item"), Some(start));
    let first = tokio::time::timeout(Duration::from_secs(5), w.next())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first, Err(StoreError::Gone { .. })), "{first:?}");
    // A recent revision still works.
    let now = b.revision().await.unwrap();
    let mut w = b.watch(Some("Item"), Some(now - 2));
    assert_eq!(next(&mut w).await.revision, now - 1);
}
