//! A node on the etcd backend: its desired state lives in a 3-member etcd cluster (one key per
//! object, readable with etcdctl); it runs what is applied there, adopts it after a crash of
//! aosd, and keeps running what it runs while the whole store is away, catching up when it
//! returns (no eviction on a partition).
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aos_e2e::node::{instance, rand_suffix, Node};
use aos_testkit::EtcdCluster;

fn etcdctl(cluster: &EtcdCluster, args: &[&str]) -> String {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(cluster.endpoints().join(","))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pid(node: &Node, name: &str) -> u64 {
    node.json("instance", name)["status"]["pid"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_node_on_etcd_runs_adopts_and_keeps_running_while_the_store_is_away() {
    let mut cluster = EtcdCluster::start(3);
    let prefix = format!("/e2e-{}-{}/", std::process::id(), rand_suffix());
    let mut node = Node::start(&format!(
        "[store]\nbackend = \"etcd\"\n[store.etcd]\nendpoints = {:?}\nprefix = \"{prefix}\"\n",
        cluster.endpoints()
    ));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services/state-writer");
    let svc = node.aosd.path().join("svc");
    let cp = Command::new("cp")
        .arg("-r")
        .arg(&examples)
        .arg(&svc)
        .status();
    assert!(cp.unwrap().success());
    node.install(&svc, "sw");
    node.apply(&instance("pa", "sw", "v1", 0, ""));
    node.active("pa");
    let pa = pid(&node, "pa");

    // The objects are in etcd, one key each, and etcd's revision is their resourceVersion.
    let keys = etcdctl(&cluster, &["get", &prefix, "--prefix", "--keys-only"]);
    for k in ["Instance/pa", "Item/sw-v1", "Node/e2e-node"] {
        assert!(keys.contains(&format!("{prefix}{k}")), "{k} in {keys}");
    }
    let stored: serde_json::Value = serde_json::from_str(
        etcdctl(
            &cluster,
            &["get", &format!("{prefix}Instance/pa"), "--print-value-only"],
        )
        .trim(),
    )
    .unwrap();
    assert_eq!(stored["spec"]["itemId"], "sw");

    // The whole store goes away: what runs keeps running, and a write says why it fails.
    cluster.kill_all();
    let f = node.aosd.path().join("pb.yaml");
    std::fs::write(&f, instance("pb", "sw", "v1", 1, "")).unwrap();
    let started = Instant::now();
    let out = node
        .aosd
        .aosctl()
        .args(["apply", "-f", f.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "an apply without a store fails");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unavailable"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.containers().contains("pa"), "{}", node.containers());
    assert!(
        node.aosd.child.try_wait().unwrap().is_none(),
        "aosd keeps running"
    );

    // The store returns: the node catches up and runs what is applied now.
    cluster.start_stopped();
    node.aosd.ok(&["apply", "-f", f.to_str().unwrap()]);
    node.active("pb");
    assert_eq!(pid(&node, "pa"), pa, "pa ran on through the outage");

    // aosd crashes and comes back on the same store: both are adopted, not restarted.
    let pb = pid(&node, "pb");
    node.aosd.crash_and_restart();
    node.active("pa");
    node.active("pb");
    assert_eq!((pid(&node, "pa"), pid(&node, "pb")), (pa, pb));
    let restarts = node.json("instance", "pa")["status"]["restarts"].clone();
    assert!(restarts.is_null() || restarts == 0, "{restarts}");

    // aosd restarts while the store is away: it waits for the store, not exits, its instances
    // run on, and it comes up and adopts them when the store returns.
    cluster.kill_all();
    node.aosd.crash_and_restart_while(|aosd| {
        // Longer than one try (connect, then the backend's own retries for 10 s).
        std::thread::sleep(Duration::from_secs(15));
        assert!(
            aosd.try_wait().unwrap().is_none(),
            "aosd waits for its store"
        );
        cluster.start_stopped();
    });
    assert!(node.aosd.log().contains("the etcd store is unreachable"));
    node.active("pa");
    assert_eq!((pid(&node, "pa"), pid(&node, "pb")), (pa, pb));
}

/// Node `id` of a unit on `prefix`, heartbeating every second, lost after 4 s.
fn unit_node(cluster: &EtcdCluster, prefix: &str, id: &str) -> aos_e2e::Aosd {
    aos_e2e::Aosd::start_with(aos_e2e::AosdOptions {
        config: Some(format!(
            "[node]\nusage_interval = \"1s\"\nlost_after = \"4s\"\n[store]\nbackend = \"etcd\"\n\
             [store.etcd]\nendpoints = {:?}\nprefix = \"{prefix}\"\n",
            cluster.endpoints()
        )),
        args: vec!["--node-id".into(), id.into()],
        ..Default::default()
    })
}

fn ready(node: &aos_e2e::Aosd, name: &str) -> (String, String) {
    let c = aos_e2e::condition(&node.json("node", name), "Ready");
    (
        c["status"].as_str().unwrap_or("").to_string(),
        c["reason"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_node_whose_heartbeat_stops_is_marked_unknown_by_the_others_and_ready_when_it_returns() {
    let cluster = EtcdCluster::start(3);
    let prefix = format!("/unit-{}-{}/", std::process::id(), rand_suffix());
    let a = unit_node(&cluster, &prefix, "node-a");
    let mut b = unit_node(&cluster, &prefix, "node-b");
    let table = a.ok(&["get", "nodes"]);
    assert!(
        table.contains("node-a") && table.contains("node-b"),
        "{table}"
    );
    a.until("node", "node-b", 20, |v| {
        aos_e2e::condition(v, "Ready")["status"] == "True"
    });

    // node-b dies without a word: node-a marks it after lost_after, and only then.
    let _ = b.child.kill();
    let _ = b.child.wait();
    let killed = Instant::now();
    let v = a.until("node", "node-b", 20, |v| {
        aos_e2e::condition(v, "Ready")["status"] == "Unknown"
    });
    let after = killed.elapsed();
    assert!(after >= Duration::from_secs(2), "marked after {after:?}");
    let c = aos_e2e::condition(&v, "Ready");
    assert_eq!(c["reason"], "HeartbeatLost", "{c}");
    assert!(
        c["message"].as_str().unwrap().contains("no heartbeat"),
        "{c}"
    );
    assert_eq!(ready(&a, "node-a").0, "True", "node-a itself stays Ready");
    let table = a.ok(&["get", "nodes"]);
    let line = |n: &str| {
        table
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap()
            .to_string()
    };
    assert!(line("node-b").contains("Unknown"), "{table}");
    assert!(line("node-a").contains("Ready"), "{table}");

    // node-b comes back on its data: its heartbeat makes it Ready again.
    b.crash_and_restart();
    a.until("node", "node-b", 20, |v| {
        aos_e2e::condition(v, "Ready")["status"] == "True"
    });
    assert_eq!(ready(&b, "node-b"), ready(&a, "node-b"));
}
