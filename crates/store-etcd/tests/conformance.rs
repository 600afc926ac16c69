//! The etcd backend passes the store's conformance suite, unchanged, on a real 3-member etcd
//! cluster on loopback: as it is, and with a member killed and started again during the suite.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aos_api::DynObject;
use aos_store::conformance::{run, SuiteOptions};
use aos_store::{Backend, StoreError, WatchEvent};
use aos_store_etcd::{Etcd, EtcdOptions};
use aos_testkit::EtcdCluster;
use futures::StreamExt;

/// Backends made so far: each gets a prefix of its own on the one cluster.
static MADE: AtomicUsize = AtomicUsize::new(0);

/// A factory of fresh, empty backends.
fn factory(endpoints: Vec<String>) -> impl Fn(SuiteOptions) -> Arc<dyn Backend> {
    move |o: SuiteOptions| {
        let opts = EtcdOptions {
            endpoints: endpoints.clone(),
            prefix: format!("/suite{}/", MADE.fetch_add(1, Ordering::SeqCst)),
            event_log_limit: o.event_log_limit,
            ..EtcdOptions::default()
        };
        let etcd = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(Etcd::connect(opts))
        })
        .unwrap();
        Arc::new(etcd) as Arc<dyn Backend>
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_passes_the_conformance_suite_on_a_three_member_cluster() {
    let cluster = EtcdCluster::start(3);
    run(factory(cluster.endpoints())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_store_passes_the_suite_while_a_member_is_killed_and_restarted() {
    let mut cluster = EtcdCluster::start(3);
    let endpoints = cluster.endpoints();
    // Member 0 is down from the start (the client must route around an endpoint it was given)
    // and comes back during the suite; the suite runs again once it is back.
    cluster.kill(0);
    let cluster = Arc::new(std::sync::Mutex::new(cluster));
    let restarted = Arc::new(AtomicBool::new(false));
    let chaos = {
        let (cluster, restarted) = (cluster.clone(), restarted.clone());
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(800));
            cluster.lock().unwrap().restart(0);
            restarted.store(true, Ordering::SeqCst);
        })
    };
    let mut runs = 0;
    while !restarted.load(Ordering::SeqCst) {
        run(factory(endpoints.clone())).await;
        runs += 1;
    }
    run(factory(endpoints)).await;
    chaos.await.unwrap();
    eprintln!("the suite ran {runs} time(s) before member 0 was back, and once after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_without_gap_or_repeat_when_its_member_restarts() {
    let mut cluster = EtcdCluster::start(3);
    let eps = cluster.endpoints();
    let connect = |endpoints: Vec<String>| {
        Etcd::connect(EtcdOptions {
            endpoints,
            prefix: "/resume/".into(),
            ..EtcdOptions::default()
        })
    };
    // The watcher knows only member 0; the writer only members 1 and 2.
    let watcher = connect(vec![eps[0].clone()]).await.unwrap();
    let writer = connect(eps[1..].to_vec()).await.unwrap();
    let start = writer.revision().await.unwrap();
    let mut w = watcher.watch(Some("Item"), Some(start));
    let item = |i: usize| DynObject {
        api_version: aos_api::API_VERSION.into(),
        kind: "Item".into(),
        metadata: aos_api::ObjectMeta {
            name: format!("i{i}"),
            ..Default::default()
        },
        spec: serde_json::json!({ "i": i }),
        status: serde_json::Value::Null,
    };
    for i in 0..10 {
        writer.apply(item(i), false).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 10 {
        got.push(next(&mut w).await);
    }
    cluster.kill(0);
    for i in 10..30 {
        writer.apply(item(i), false).await.unwrap();
    }
    tokio::task::block_in_place(|| cluster.restart(0));
    for i in 30..40 {
        writer.apply(item(i), false).await.unwrap();
    }
    while got.len() < 40 {
        got.push(next(&mut w).await);
    }
    let names: Vec<String> = got.iter().map(|e| e.object.metadata.name.clone()).collect();
    let want: Vec<String> = (0..40).map(|i| format!("i{i}")).collect();
    assert_eq!(names, want, "every write once, in order");
    assert!(got.windows(2).all(|p| p[0].revision < p[1].revision));
    assert_eq!(got[0].revision, start + 1);
}

async fn next(
    w: &mut futures::stream::BoxStream<'static, Result<WatchEvent, StoreError>>,
) -> WatchEvent {
    tokio::time::timeout(Duration::from_secs(20), w.next())
        .await
        .expect("an event within 20 s")
        .expect("the watch to stay open")
        .expect("an event, not an error")
}
