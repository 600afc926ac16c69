//! A Network in a unit: every node makes its own bridge of it, on a slice of the subnet of its
//! own (its instances take addresses from that slice, its gateway is the slice's first
//! address), and holds a finalizer of its own, so that a deleted Network goes only once each
//! node has removed its bridge. Two Network controllers (two nodes, two scopes) on one
//! in-memory store and the real netlink; the nodes share this host, so no route is added.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_api::{NetworkSpec, NodeSpec, Object};
use aos_network_controller::hostports::PortRange;
use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::Links;
use aos_network_controller::slices::Unit;
use aos_network_controller::{dns::Dns, Attacher, Names, NetworkReconciler};
use aos_ports::{Networks, Shaping};
use aos_reconcile::ControllerConfig;
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < Duration::from_secs(20), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_node_has_its_slice_and_removes_its_own_bridge_before_a_deleted_network_goes() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let nodes = Api::<NodeSpec>::new(backend.clone());
    for node in ["north", "south"] {
        nodes
            .apply(&Object::new(node, NodeSpec::default()))
            .await
            .unwrap();
        // Both on this host.
        nodes
            .update_status(node, |s| s.address = Some("127.0.0.1".into()))
            .await
            .unwrap();
    }
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
        .in_unit(Unit {
            node: node.into(),
            bits: 2,
        });
        let c = aos_network_controller::controller(
            reconciler,
            backend.clone(),
            ControllerConfig::default(),
        );
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
    until("routes checked", async || {
        let s = api.get("span").await.unwrap().status;
        s.common.conditions.iter().any(|c| c.type_ == "RoutesReady")
    })
    .await;
    let net = api.get("span").await.unwrap();
    let slices: Vec<&str> = net.status.slices.values().map(String::as_str).collect();
    let mut sorted = slices.clone();
    sorted.sort();
    assert_eq!(sorted, ["172.29.41.0/26", "172.29.41.64/26"], "{net:?}");
    let routes = net
        .status
        .common
        .conditions
        .iter()
        .find(|c| c.type_ == "RoutesReady");
    assert_eq!(routes.unwrap().reason, "Routed", "{net:?}");
    // Each node's own conditions, summed up in the top-level ones.
    until("both nodes report", async || {
        api.get("span").await.unwrap().status.nodes.len() == 2
    })
    .await;
    let net = api.get("span").await.unwrap();
    for (node, own) in &net.status.nodes {
        let ready = own.conditions.iter().find(|c| c.type_ == "Ready");
        assert_eq!(ready.unwrap().reason, "BridgeUp", "{node}: {net:?}");
    }
    // Each bridge carries its own slice's gateway.
    for (names, node) in names.iter().zip(["north", "south"]) {
        let slice = Cidr::parse(&net.status.slices[node]).unwrap();
        let out = std::process::Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", &names.bridge("span")])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.contains(&format!("{}/26", slice.gateway())),
            "{node}: {out}"
        );
    }
    // An instance on south takes an address from south's slice, south's gateway its gateway.
    let south = Cidr::parse(&net.status.slices["south"]).unwrap();
    let attacher = Attacher::new(
        backend.clone(),
        names[1].clone(),
        links.clone(),
        PortRange::parse("20000-20100").unwrap(),
    )
    .in_unit("south");
    let a = attacher
        .attach("far-0", "span", Shaping::default())
        .await
        .unwrap();
    assert!(
        south.contains(a.ip.parse().unwrap()),
        "{a:?} outside {south}"
    );
    assert_eq!(a.gateway, south.gateway().to_string());
    attacher.detach("far-0", "span").await.unwrap();

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
