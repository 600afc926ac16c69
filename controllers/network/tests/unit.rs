//! A Network in a unit: every node makes its own bridge of it and holds a finalizer of its
//! own, so that a deleted Network goes only once each node has removed its bridge. Two Network
//! controllers (two nodes, two scopes) on one in-memory store and the real netlink.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_api::{NetworkSpec, Object};
use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::Links;
use aos_network_controller::{dns::Dns, Names, NetworkReconciler};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_removes_its_own_bridge_before_a_deleted_network_goes() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let links = Links::new().unwrap();
    let scopes = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let names: Vec<Names> = scopes
        .iter()
        .map(|s| Names::new(&s.path().display().to_string(), "/run/netns".into()))
        .collect();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut controllers = Vec::new();
    for (names, node) in names.iter().zip(["north", "south"]) {
        let reconciler = NetworkReconciler::new(
            names.clone(),
            links.clone(),
            vec![Cidr::parse("172.29.41.0/24").unwrap()],
            Dns::new(vec![]),
            None,
        )
        .in_unit(node);
        let c = Controller::new(reconciler, backend.clone(), ControllerConfig::default());
        controllers.push(tokio::spawn(c.run(stop.clone())));
    }
    let api = Api::<NetworkSpec>::new(backend.clone());
    let net = Object::new(
        "span".to_string(),
        NetworkSpec {
            subnet: Some("172.29.41.0/24".into()),
            ..NetworkSpec::default()
        },
    );
    api.apply(&net).await.unwrap();
    until("both bridges and both finalizers", async || {
        let fin = api.get("span").await.unwrap().metadata.finalizers;
        let mut up = 0;
        for n in &names {
            up += links.index(&n.bridge("span")).await.unwrap().is_some() as usize;
        }
        up == 2 && fin.len() == 2
    })
    .await;
    let mut fin = api.get("span").await.unwrap().metadata.finalizers;
    fin.sort();
    assert_eq!(fin, ["aos.edge/network-north", "aos.edge/network-south"]);

    api.delete("span").await.unwrap();
    until("the network goes", async || {
        api.get_opt("span").await.unwrap().is_none()
    })
    .await;
    for n in &names {
        assert!(
            links.index(&n.bridge("span")).await.unwrap().is_none(),
            "a bridge left behind"
        );
    }
    stop.cancel();
    for c in controllers {
        let _ = c.await;
    }
}
