//! A member that lags. A client that reaches only a member left behind (the others paused) gets
//! no read at all (a `get` is linearizable) and no write: `apply` plans on the member's own,
//! stale copy (a serializable read), and the compare-and-swap that carries it cannot commit.
//! Once the others are back, the same write lands on the newest object: the status and the
//! generation written meanwhile are kept, nothing is lost to the stale copy.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aos_api::{DynObject, ObjectMeta, API_VERSION};
use aos_store::{Backend, StoreError};
use aos_store_etcd::{Etcd, EtcdOptions};
use aos_testkit::EtcdCluster;

fn note(text: &str) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: "Note".into(),
        metadata: ObjectMeta {
            name: "n".into(),
            ..Default::default()
        },
        spec: serde_json::json!({ "text": text }),
        status: serde_json::Value::Null,
    }
}

/// A client of `endpoints` that gives a request `patience` (a paused member may have been the
/// leader: the others elect one first).
async fn connect(endpoints: Vec<String>, patience: Duration) -> Arc<dyn Backend> {
    let opts = EtcdOptions {
        endpoints,
        prefix: "/lagging/".into(),
        retry_for: patience,
        request_timeout: Duration::from_secs(2),
        ..EtcdOptions::default()
    };
    Arc::new(Etcd::connect(opts).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_left_behind_serves_neither_a_stale_read_nor_a_write_planned_on_one() {
    let mut cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoints();
    let quorum = connect(endpoints[..2].to_vec(), Duration::from_secs(15)).await;
    let lagging = connect(vec![endpoints[2].clone()], Duration::from_secs(2)).await;
    quorum.apply(note("first"), false).await.unwrap();
    assert_eq!(
        lagging.get("Note", "n").await.unwrap().spec["text"],
        "first"
    );

    // Member 2 misses a spec change and a status; then the other two stop and it runs alone.
    cluster.pause(2);
    quorum.apply(note("second"), false).await.unwrap();
    quorum
        .update_status("Note", "n", serde_json::json!({ "seen": "second" }), None)
        .await
        .unwrap();
    cluster.pause(0);
    cluster.pause(1);
    cluster.resume(2);
    let read = lagging.get("Note", "n").await;
    assert!(
        matches!(read, Err(StoreError::Unavailable(_))),
        "no stale read: {read:?}"
    );
    let write = lagging.apply(note("third"), false).await;
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "no write planned on the stale copy: {write:?}"
    );

    cluster.resume(0);
    cluster.resume(1);
    let lagging = connect(vec![endpoints[2].clone()], Duration::from_secs(15)).await;
    let third = lagging.apply(note("third"), false).await.unwrap().object;
    assert_eq!(third.spec["text"], "third");
    assert_eq!(
        third.status["seen"], "second",
        "the status written meanwhile is kept"
    );
    assert_eq!(
        third.metadata.generation, 3,
        "one generation per spec change"
    );
    let now = quorum.get("Note", "n").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        third.metadata.resource_version
    );
}
