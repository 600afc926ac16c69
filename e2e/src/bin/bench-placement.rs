//! The placement benchmark of `hack/bench/placement.sh`: how long the unit's placement takes
//! for 1,000 instances on 3 nodes, the rules alone and a whole pass that writes every decision,
//! on etcd (3 members on loopback) beside the embedded store.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_api::{
    ConditionStatus, InstanceSpec, NodeSpec, NodeStatus, Object, RuntimeInfo, RuntimeType,
};
use aos_placement_controller::{pass, rules, views};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

fn node(name: &str) -> (Object<NodeSpec>, NodeStatus) {
    let mut status = NodeStatus {
        arch: "x86_64".into(),
        os: "linux".into(),
        dmips: 1_000_000,
        total_ram: 64 << 30,
        runtimes: vec![RuntimeInfo {
            id: name.into(),
            type_: RuntimeType::Container,
            arch: "x86_64".into(),
            os: "linux".into(),
            max_instances: 0,
            dmips: 1_000_000,
            ram: 64 << 30,
        }],
        ..Default::default()
    };
    status.common.set_condition(
        "Ready",
        ConditionStatus::True,
        "NodeReported",
        "",
        chrono::Utc::now(),
    );
    (Object::new(name, NodeSpec::default()), status)
}

fn instance(i: usize) -> Object<InstanceSpec> {
    Object::new(
        format!("i{i}"),
        InstanceSpec {
            item_id: format!("item{}", i % 10),
            version: "1".into(),
            subject_id: "s".into(),
            index: i as u64,
            priority: (i % 3) as u64,
            ..Default::default()
        },
    )
}

/// Stores 3 nodes and `n` unplaced instances, then times passes until all are placed.
async fn whole_pass(
    backend: Arc<dyn Backend>,
    n: usize,
) -> (Duration, usize, BTreeMap<String, usize>) {
    let nodes = Api::<NodeSpec>::new(backend.clone());
    for name in ["node-a", "node-b", "node-c"] {
        let (o, status) = node(name);
        nodes.apply(&o).await.unwrap();
        nodes
            .update_status(name, |s| *s = status.clone())
            .await
            .unwrap();
    }
    let api = Api::<InstanceSpec>::new(backend.clone());
    for i in 0..n {
        api.apply(&instance(i)).await.unwrap();
    }
    let t0 = Instant::now();
    let mut placed = 0;
    for _ in 0..5 {
        let p = pass(&backend).await.unwrap();
        placed += p;
        if p == 0 {
            break;
        }
    }
    let took = t0.elapsed();
    let (all, _) = api.list(&Default::default()).await.unwrap();
    let mut spread = BTreeMap::new();
    for o in all {
        *spread
            .entry(o.spec.node_name.unwrap_or_else(|| "<none>".into()))
            .or_default() += 1;
    }
    (took, placed, spread)
}

fn main() {
    let n: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    // The rules alone, on views.
    let node_views: Vec<_> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|name| {
            let (mut o, status) = node(name);
            o.status = status;
            views::node_view(&o)
        })
        .collect();
    let inst_views: Vec<_> = (0..n)
        .map(|i| views::instance_view(&instance(i), None))
        .collect();
    let mut decide = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let d = rules::place(&node_views, &inst_views);
        decide.push(t.elapsed());
        assert_eq!(d.len(), n);
    }
    decide.sort();

    let cluster = aos_testkit::EtcdCluster::start(3);
    let etcd = rt.block_on(async {
        let backend = aos_store_etcd::Etcd::connect(aos_store_etcd::EtcdOptions {
            endpoints: cluster.endpoints(),
            prefix: "/bench/".into(),
            ..Default::default()
        })
        .await
        .unwrap();
        whole_pass(Arc::new(backend), n).await
    });
    let embedded = rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let backend = Embedded::open(EmbeddedOptions::file(dir.path().join("s.redb"))).unwrap();
        whole_pass(Arc::new(backend), n).await
    });

    println!("placement benchmark: {n} instances, 3 nodes, one run");
    println!();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!(
        "{:<52} {:>14}",
        "decision (rules alone), median of 20",
        ms(decide[decide.len() / 2])
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "whole placement (read, decide, write each)", "etcd", "embedded"
    );
    println!("{:<52} {:>14} {:>14}", "  time", ms(etcd.0), ms(embedded.0));
    println!(
        "{:<52} {:>14} {:>14}",
        "  instances placed", etcd.1, embedded.1
    );
    println!(
        "{:<52} {:>14} {:>14}",
        "  per instance",
        ms(etcd.0 / n.max(1) as u32),
        ms(embedded.0 / n.max(1) as u32)
    );
    println!("  spread on etcd: {:?}", etcd.2);
    println!("  spread on embedded: {:?}", embedded.2);
}
