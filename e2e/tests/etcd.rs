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
}
