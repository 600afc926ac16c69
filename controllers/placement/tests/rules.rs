//! The placement rules, case by case.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use aos_api::RuntimeType;
use aos_placement_controller::rules::{place, Decision, Demand, InstanceView, NodeView};

const GIB: u64 = 1 << 30;

fn node(name: &str) -> NodeView {
    NodeView {
        name: name.into(),
        ready: true,
        os: "linux".into(),
        arch: "amd64".into(),
        runtimes: vec![(RuntimeType::Container, 0)],
        dmips: 10_000,
        ram: 4 * GIB,
        cpu_ratio: 50.0,
        ram_ratio: 50.0,
        ..Default::default()
    }
}

fn inst(name: &str, cpu: u64, ram: u64) -> InstanceView {
    InstanceView {
        name: name.into(),
        item_id: "svc".into(),
        runtime: RuntimeType::Container,
        demand: Demand {
            cpu_request: Some(cpu),
            ram_request: Some(ram),
            movable: true,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn placed(d: &BTreeMap<String, Decision>) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for v in d.values() {
        if let Decision::Place(n) = v {
            *count.entry(n.clone()).or_default() += 1;
        }
    }
    count
}

#[test]
fn equal_nodes_share_the_instances_by_most_free_cpu() {
    let nodes = [node("a"), node("b"), node("c")];
    let insts: Vec<_> = (0..6)
        .map(|i| inst(&format!("i{i}"), 1000, GIB / 4))
        .collect();
    let d = place(&nodes, &insts);
    assert_eq!(
        placed(&d),
        [("a".into(), 2), ("b".into(), 2), ("c".into(), 2)].into()
    );
}

#[test]
fn a_node_of_higher_priority_is_filled_first() {
    let mut b = node("b");
    b.priority = 10;
    let nodes = [node("a"), b];
    let insts: Vec<_> = (0..3)
        .map(|i| inst(&format!("i{i}"), 1000, GIB / 4))
        .collect();
    assert_eq!(placed(&place(&nodes, &insts)), [("b".into(), 3)].into());
}

#[test]
fn the_node_selector_must_match_the_node_labels() {
    let mut b = node("b");
    b.labels.insert("zone".into(), "north".into());
    let nodes = [node("a"), b];
    let mut i = inst("i", 100, 0);
    i.node_selector.insert("zone".into(), "north".into());
    let d = place(&nodes, &[i.clone()]);
    assert_eq!(d["i"], Decision::Place("b".into()));
    i.node_selector.insert("zone".into(), "south".into());
    let d = place(&nodes, &[i]);
    assert_eq!(
        d["i"],
        Decision::Unschedulable("0/2 nodes are available: 2 labels not matched".into())
    );
}

#[test]
fn runtime_type_platform_and_max_instances_are_respected() {
    let mut a = node("a");
    a.runtimes = vec![(RuntimeType::Container, 1)];
    let mut b = node("b");
    b.arch = "arm64".into();
    let mut c = node("c");
    c.runtimes = vec![(RuntimeType::Boot, 1)];
    let nodes = [a, b, c];
    let mut i0 = inst("i0", 0, 0);
    i0.demand.platforms = vec!["linux/amd64".into()];
    let mut i1 = i0.clone();
    i1.name = "i1".into();
    let d = place(&nodes, &[i0, i1]);
    assert_eq!(d["i0"], Decision::Place("a".into()));
    assert_eq!(
        d["i1"],
        Decision::Unschedulable(
            "0/3 nodes are available: 1 maxInstances reached, 1 no container runtime, 1 other platform"
                .into()
        )
    );
}

#[test]
fn a_multi_platform_item_runs_on_every_platform_its_index_offers_and_no_other() {
    let mut b = node("b");
    b.arch = "arm64".into();
    let mut c = node("c");
    c.arch = "riscv64".into();
    let nodes = [node("a"), b, c];
    // The index offers two (the top-level resolution is amd64's: it does not narrow them).
    let mut demand = inst("x", 0, 0).demand;
    demand.platforms = vec!["linux/amd64".into(), "linux/arm64".into()];
    let insts: Vec<_> = (0..4)
        .map(|n| InstanceView {
            demand: demand.clone(),
            ..inst(&format!("i{n}"), 0, 0)
        })
        .collect();
    let d = place(&nodes, &insts);
    assert_eq!(placed(&d), [("a".into(), 2), ("b".into(), 2)].into());
    let mut nowhere = insts[0].clone();
    nowhere.demand.platforms = vec!["linux/s390x".into()];
    assert_eq!(
        place(&nodes, &[nowhere])["i0"],
        Decision::Unschedulable("0/3 nodes are available: 3 other platform".into())
    );
}

#[test]
fn requests_count_against_capacity_and_the_higher_priority_instance_goes_first() {
    let nodes = [node("a")];
    let mut low = inst("low", 6000, 0);
    low.item_id = "aaa".into();
    let mut high = inst("high", 6000, 0);
    high.item_id = "zzz".into();
    high.priority = 5;
    let d = place(&nodes, &[low, high]);
    assert_eq!(d["high"], Decision::Place("a".into()));
    assert_eq!(
        d["low"],
        Decision::Unschedulable("0/1 nodes are available: 1 insufficient CPU".into())
    );
}

#[test]
fn a_request_is_clamped_to_the_quota_and_a_quota_alone_takes_the_node_ratio() {
    let nodes = [node("a")];
    // 8000 requested but the quota is 4000: two fit in 10000 DMIPS.
    let mut i = inst("x", 8000, 0);
    i.demand.cpu_quota = Some(4000);
    let mut j = i.clone();
    j.name = "y".into();
    let d = place(&nodes, &[i, j]);
    assert!(d.values().all(|v| matches!(v, Decision::Place(_))), "{d:?}");
    // No request: 50 % of a 3 GiB RAM quota is 1.5 GiB; the third does not fit in 4 GiB.
    let quota_only = |n: &str| {
        let mut i = inst(n, 0, 0);
        i.demand.ram_request = None;
        i.demand.ram_quota = Some(3 * GIB);
        i
    };
    let d = place(&nodes, &[quota_only("p"), quota_only("q"), quota_only("r")]);
    assert_eq!(placed(&d), [("a".into(), 2)].into());
    assert_eq!(
        d["r"],
        Decision::Unschedulable("0/1 nodes are available: 1 insufficient RAM".into())
    );
}

#[test]
fn instances_of_a_lost_node_move_when_their_policy_allows_and_stay_otherwise() {
    let mut a = node("a");
    a.ready = false;
    let nodes = [a, node("b")];
    let mut moves = inst("moves", 100, 0);
    moves.node = Some("a".into());
    let mut stays = moves.clone();
    stays.name = "stays".into();
    stays.demand.movable = false;
    let mut settled = inst("settled", 100, 0);
    settled.node = Some("b".into());
    let d = place(&nodes, &[moves, stays, settled]);
    assert_eq!(d["moves"], Decision::Place("b".into()));
    assert_eq!(d["stays"], Decision::Stay);
    assert_eq!(d["settled"], Decision::Stay);
}

#[test]
fn placed_instances_take_their_share_before_new_ones_are_placed() {
    let nodes = [node("a"), node("b")];
    let mut old = inst("old", 9000, 0);
    old.node = Some("a".into());
    let d = place(&nodes, &[old, inst("new", 2000, 0)]);
    assert_eq!(d["new"], Decision::Place("b".into()));
    assert_eq!(d["old"], Decision::Stay);
}

#[test]
fn instances_that_request_nothing_still_spread_by_count() {
    let nodes = [node("a"), node("b"), node("c")];
    let insts: Vec<_> = (0..9).map(|i| inst(&format!("i{i}"), 0, 0)).collect();
    assert_eq!(
        placed(&place(&nodes, &insts)),
        [("a".into(), 3), ("b".into(), 3), ("c".into(), 3)].into()
    );
}
