//! A unit of three nodes on one etcd cluster (one containerd serves them, each node in its own
//! namespace): 30 instances without a node are placed by the leader of the unit, spread over the
//! nodes, by node labels; one that fits nowhere says why, node by node. The leader dies without a
//! word: the others mark it lost, one of them takes the lease over and its instances move; when
//! it comes back it lets go of them, so that each instance runs exactly once. An item only one
//! node runs is fetched by that node alone.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aos_e2e::condition;
use aos_e2e::node::{instance, item};
use aos_e2e::unit::Unit;
use serde_json::Value;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];
/// Instances placed anywhere (and two more with node selectors).
const SPREAD: u64 = 28;

fn active(v: &Value) -> bool {
    v["status"]["state"] == "active" && v["status"]["pid"].is_u64()
}

#[test]
fn a_unit_places_spreads_and_moves_instances_off_a_lost_leader_exactly_once() {
    let mut unit = Unit::start(&[
        ("node-a", ""),
        ("node-b", ""),
        // The only one in the north.
        ("node-c", "zone = \"north\"\n"),
    ]);
    let a = &unit.nodes[0];
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services/state-writer");
    let svc = a.path().join("svc");
    assert!(Command::new("cp")
        .arg("-r")
        .arg(&examples)
        .arg(&svc)
        .status()
        .unwrap()
        .success());
    let archive = svc.with_extension("tar");
    a.ok(&[
        "pack",
        svc.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
    ]);
    let mut yaml = item("sw", "v1", &format!("archive: {}", archive.display()));
    // 30 instances: 28 for anywhere, one for the north, one for a south no node is in.
    for i in 0..SPREAD {
        yaml += &instance(&format!("i{i}"), "sw", "v1", i, "");
    }
    yaml += &instance(
        "north",
        "sw",
        "v1",
        SPREAD,
        "  nodeSelector:\n    zone: north\n",
    );
    yaml += &instance(
        "south",
        "sw",
        "v1",
        SPREAD + 1,
        "  nodeSelector:\n    zone: south\n",
    );
    let f = a.path().join("unit.yaml");
    std::fs::write(&f, yaml).unwrap();
    a.ok(&["apply", "-f", f.to_str().unwrap()]);

    let names: Vec<String> = (0..SPREAD)
        .map(|i| format!("i{i}"))
        .chain(["north".into()])
        .collect();
    let mut on: BTreeMap<String, String> = BTreeMap::new();
    for n in &names {
        let v = a.until("instance", n, 120, active);
        on.insert(
            n.clone(),
            v["spec"]["nodeName"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(on["north"], "node-c", "by label");
    let mut per_node: BTreeMap<&str, usize> = BTreeMap::new();
    for n in on.values() {
        *per_node.entry(n).or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "spread over every node: {on:?}");
    // 29 placed: 9 or 10 each, give or take the one only node-c may take.
    assert!(per_node.values().all(|c| (9..=11).contains(c)), "{on:?}");
    let south = a.until("instance", "south", 30, |v| {
        condition(v, "Scheduled")["reason"] == "Unschedulable"
    });
    assert_eq!(
        condition(&south, "Scheduled")["message"],
        "0/3 nodes are available: 3 labels not matched"
    );
    assert!(south["spec"]["nodeName"].is_null());
    let wide = a.ok(&["get", "instances", "-o", "wide"]);
    let row = |n: &str| {
        wide.lines()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap()
            .to_string()
    };
    assert!(wide.lines().next().unwrap().contains("NODE"), "{wide}");
    assert!(row("north").contains("node-c"), "{wide}");
    assert!(row("south").contains("<none>"), "{wide}");
    // `get nodes` counts each node's instances (the unplaced one on none).
    let nodes = a.ok(&["get", "nodes"]);
    assert!(
        nodes.lines().next().unwrap().contains("INSTANCES"),
        "{nodes}"
    );
    for (node, count) in &per_node {
        let line = nodes.lines().find(|l| l.starts_with(&format!("{node} ")));
        let cells: Vec<&str> = line.unwrap().split_whitespace().collect();
        assert_eq!(cells[2], count.to_string(), "{nodes}");
        // No requests: each reserves half its quota (1000 DMIPS, 16 MiB).
        assert_eq!(cells[3], (count * 500).to_string(), "{nodes}");
    }
    // Each runs once, on its node.
    for (i, node) in unit.nodes.iter().enumerate() {
        let mut mine: Vec<&String> = on
            .iter()
            .filter(|(_, n)| *n == NODES[i])
            .map(|(k, _)| k)
            .collect();
        mine.sort();
        let mut have = unit.containers(node);
        have.sort();
        assert_eq!(have.iter().collect::<Vec<_>>(), mine, "{}", NODES[i]);
    }

    // An item only one node runs is fetched by that node alone; when its instance goes, that
    // node lets its copy go.
    let lonely = item("sw", "v2", &format!("archive: {}", archive.display()))
        + &instance("lonely", "sw", "v2", SPREAD + 2, "  nodeName: node-b\n");
    std::fs::write(&f, lonely).unwrap();
    a.ok(&["apply", "-f", f.to_str().unwrap()]);
    a.until("instance", "lonely", 60, active);
    let fetched_by = |item: &str| -> Vec<String> {
        let v = a.json("item", item);
        let nodes = v["status"]["nodes"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        nodes.keys().cloned().collect()
    };
    let v2 = a.until("item", "sw-v2", 30, |v| v["status"]["phase"] == "Ready");
    assert_eq!(fetched_by("sw-v2"), ["node-b"], "{v2}");
    assert_eq!(fetched_by("sw-v1"), NODES, "every node runs v1");
    let items = a.ok(&["get", "items", "-o", "wide"]);
    let nodes_col = |item: &str| -> String {
        let header: Vec<&str> = items.lines().next().unwrap().split_whitespace().collect();
        let at = header.iter().position(|h| *h == "NODES").unwrap();
        let line = items.lines().find(|l| l.starts_with(&format!("{item} ")));
        line.unwrap()
            .split_whitespace()
            .nth(at)
            .unwrap()
            .to_string()
    };
    assert_eq!(nodes_col("sw-v1"), "3/3", "{items}");
    assert_eq!(nodes_col("sw-v2"), "1/1", "{items}");
    let owners_of = |item: &str| -> Vec<String> {
        let all: Value = serde_json::from_str(&a.ok(&["get", "layers", "-o", "json"])).unwrap();
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| {
                l["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|o| o["name"] == item))
            })
            .map(|l| l["spec"]["nodeName"].as_str().unwrap().to_string())
            .collect()
    };
    let v2_layers = owners_of("sw-v2");
    assert!(
        !v2_layers.is_empty() && v2_layers.iter().all(|n| n == "node-b"),
        "{v2_layers:?}"
    );
    a.ok(&["delete", "instance", "lonely"]);
    let v2 = a.until("item", "sw-v2", 30, |v| v["status"]["phase"] == "Pending");
    assert_eq!(condition(&v2, "Ready")["reason"], "NotPlaced");
    assert!(owners_of("sw-v2").is_empty(), "node-b let its copy go");

    // The leader dies without a word (its containers keep running, as in a partition).
    let leader = unit.leader();
    let li = NODES.iter().position(|n| *n == leader).unwrap();
    let _ = unit.nodes[li].child.kill();
    let _ = unit.nodes[li].child.wait();
    let killed = Instant::now();
    let other = (li + 1) % 3;
    let via = &unit.nodes[other];
    via.until("node", &leader, 30, |v| {
        condition(v, "Ready")["status"] == "Unknown"
    });
    let moved: Vec<&String> = on
        .iter()
        .filter(|(_, n)| **n == leader)
        .map(|(k, _)| k)
        .collect();
    for n in &moved {
        let v = via.until("instance", n, 60, |v| {
            active(v) && v["spec"]["nodeName"] != leader.as_str()
        });
        assert_eq!(condition(&v, "Scheduled")["reason"], "Placed", "{v}");
    }
    let took = killed.elapsed();
    assert_ne!(unit.leader(), leader, "another node leads");
    eprintln!(
        "{} instance(s) of the lost leader ran elsewhere {took:?} after it died",
        moved.len()
    );

    // It comes back: it lets go of what moved, so each instance runs exactly once.
    unit.nodes[li].crash_and_restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all: Vec<String> = unit.nodes.iter().flat_map(|n| unit.containers(n)).collect();
        all.sort();
        let mut want = names.clone();
        want.sort();
        if all == want {
            break;
        }
        assert!(Instant::now() < deadline, "not exactly once: {all:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(unit
        .containers(&unit.nodes[li])
        .iter()
        .all(|c| !moved.contains(&c)));

    // A Node deleted while its node runs is made again (the leader forgets only nodes that
    // stay gone).
    let a = &unit.nodes[0];
    a.ok(&["delete", "node", "node-b"]);
    a.until("node", "node-b", 30, |v| {
        condition(v, "Ready")["status"] == "True"
    });
}
