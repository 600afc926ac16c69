//! The attacher (the Network controller's side of the `Networks` port) passes the port's
//! conformance suite against real namespaces, veths and a bridge that the Network controller
//! makes from a Network in an in-memory store; everything it made is gone afterwards.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aos_api::{NetworkSpec, Object};
use aos_network_controller::hostports::PortRange;
use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::Links;
use aos_network_controller::{dns::Dns, Attacher, Names, NetworkReconciler};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attacher_passes_the_networks_conformance_suite() {
    let scope = tempfile::tempdir().unwrap();
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let names = Names::new(&scope.path().display().to_string(), "/run/netns".into());
    let links = Links::new().unwrap();
    let reconciler = NetworkReconciler::new(
        names.clone(),
        links.clone(),
        vec![Cidr::parse("172.29.40.0/24").unwrap()],
        Dns::new(vec![]),
        None,
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let controller = tokio::spawn(
        Controller::new(reconciler, backend.clone(), ControllerConfig::default()).run(stop.clone()),
    );
    let api = Api::<NetworkSpec>::new(backend.clone());
    let net = Object::new(
        "ports".to_string(),
        NetworkSpec {
            subnet: Some("172.29.40.0/24".into()),
            ..NetworkSpec::default()
        },
    );
    api.apply(&net).await.unwrap();
    let start = std::time::Instant::now();
    while api.get("ports").await.unwrap().status.bridge.is_none() {
        assert!(start.elapsed() < Duration::from_secs(20), "no bridge");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let attacher = Attacher::new(
        backend.clone(),
        names.clone(),
        links.clone(),
        PortRange::parse("1024-65535").unwrap(),
    );
    aos_ports::networks::conformance::run(&attacher, "ports", "absent", "pt-").await;

    // A host end whose peer is in a namespace that is no longer the instance's (held alive
    // here): the next attach replaces the pair, and the instance gets its eth0.
    use aos_ports::Networks as _;
    let first = attacher
        .attach("pt-stale", "ports", Default::default())
        .await
        .unwrap();
    let path = names.netns("pt-stale");
    let old = std::fs::File::open(&path).unwrap();
    aos_network_controller::netlink::delete_netns(&path).unwrap();
    let again = attacher
        .attach("pt-stale", "ports", Default::default())
        .await
        .unwrap();
    assert_eq!(again.ip, first.ip, "the address is kept");
    let inside = std::process::Command::new("ip")
        .args([
            "-n",
            path.file_name().unwrap().to_str().unwrap(),
            "-4",
            "addr",
            "show",
            "eth0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&inside.stdout);
    assert!(
        text.contains(&again.ip),
        "eth0 of the new namespace: {text}"
    );
    drop(old);
    attacher.detach("pt-stale", "ports").await.unwrap();

    // In a unit the status names the bridge of whichever node wrote last: a node attaches to
    // its own.
    api.update_status("ports", |s| s.bridge = Some("aosbelsewhere".into()))
        .await
        .unwrap();
    let on_mine = attacher
        .attach("pt-unit", "ports", Default::default())
        .await
        .unwrap();
    let master = std::process::Command::new("ip")
        .args(["-o", "link", "show", &names.host_veth("pt-unit")])
        .output()
        .unwrap();
    let master = String::from_utf8_lossy(&master.stdout);
    assert!(
        master.contains(&format!("master {}", names.bridge("ports"))),
        "{master}"
    );
    assert!(!on_mine.ip.is_empty());
    attacher.detach("pt-unit", "ports").await.unwrap();
    assert!(links
        .index(&names.host_veth("pt-stale"))
        .await
        .unwrap()
        .is_none());
    // The network goes with its bridge.
    api.delete("ports").await.unwrap();
    let start = std::time::Instant::now();
    while api.get_opt("ports").await.unwrap().is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the network stays"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(links.index(&names.bridge("ports")).await.unwrap().is_none());
    stop.cancel();
    let _ = controller.await;
}
