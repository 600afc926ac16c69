//! The cloud benchmark of `hack/bench/cloud.sh` (issue 12): desired state → 20 instances
//! active, driven by the test cloud and by `aosctl apply` in the same run; the time from the
//! cloud's return to a full unit status; and the connector's idle cost: aosd's CPU and RSS
//! over an idle minute with a connected cloud, beside an aosd without one.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::time::{Duration, Instant};

use aos_e2e::cloud::TestCloud;
use aos_e2e::node::{service, Node};
use aos_e2e::rss_bytes;
use aos_testkit::Registry;
use serde_json::{json, Value};

const N: u64 = 20;

fn active(node: &Node) -> usize {
    let v: Value =
        serde_json::from_str(&node.aosd.ok(&["get", "instances", "-o", "json"])).unwrap();
    v["items"].as_array().map_or(0, |a| {
        a.iter()
            .filter(|i| i["status"]["state"] == "active")
            .count()
    })
}

fn count(node: &Node) -> usize {
    node.aosd
        .ok(&["get", "instances", "-o", "name"])
        .lines()
        .count()
}

fn wait(what: &str, secs: u64, f: impl Fn() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "{what}: not within {secs} s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

/// aosd's CPU (percent of one core) and RSS (MiB) over `secs` of idling.
fn idle(node: &Node, secs: u64) -> (f64, f64) {
    let pid = node.aosd.pid();
    let before = aos_e2e::cpu_ticks(pid).unwrap();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = aos_e2e::cpu_ticks(pid).unwrap() - before;
    let hz = 100.0;
    let cpu = ticks as f64 / hz / secs as f64 * 100.0;
    (cpu, rss_bytes(pid).unwrap_or(0) as f64 / (1 << 20) as f64)
}

fn main() {
    let idle_secs: u64 = std::env::var("BENCH_IDLE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let host = registry.host();
    let cloud = TestCloud::start(tmp.path());
    let insecure = format!("[images]\ninsecure_registries = [\"{host}\"]\n");
    let node = Node::start(&format!(
        "{insecure}{}",
        cloud.config(&format!("{host}/aos"))
    ));
    let svc = service(
        &tmp.path().join("svc"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 3600\n",
    );
    node.publish(&svc, &host, &format!("{host}/aos/svc:1.0.0"));

    // Desired state from the cloud → N instances active.
    let desired = |n: u64| {
        json!({"messageType": "desiredStatus",
               "items": if n > 0 { json!([{"item": {"id": "svc"}, "version": "1.0.0"}]) } else { json!([]) },
               "instances": if n > 0 { json!([{"item": {"id": "svc"}, "subject": {"id": "s"}, "numInstances": n}]) } else { json!([]) }})
        .to_string()
    };
    let t = Instant::now();
    cloud.send(&desired(N), 30);
    wait("cloud: all active", 120, || active(&node) == N as usize);
    let by_cloud = t.elapsed();
    cloud.send(&desired(0), 30);
    wait("cloud: all gone", 120, || count(&node) == 0);

    // The same through aosctl apply (the item cached, as for the cloud's second time too: to
    // compare like with like, the cloud's run is repeated below with the image cached).
    let yaml = yaml_for(&host, N, "local");
    let file = tmp.path().join("local.yaml");
    std::fs::write(&file, yaml).unwrap();
    let t = Instant::now();
    node.aosd.ok(&["apply", "-f", file.to_str().unwrap()]);
    wait("apply: all active", 120, || active(&node) == N as usize);
    let by_apply = t.elapsed();
    node.aosd
        .ok(&["delete", "-f", file.to_str().unwrap(), "--wait"]);
    let t = Instant::now();
    cloud.send(&desired(N), 30);
    wait("cloud again: all active", 120, || {
        active(&node) == N as usize
    });
    let by_cloud_cached = t.elapsed();

    // The cloud away for 3 s, then back: the time to a full unit status.
    let mut cloud = cloud;
    cloud.go_away();
    std::thread::sleep(Duration::from_secs(3));
    let skip = cloud.received().len();
    let t = Instant::now();
    cloud.resume();
    cloud.wait(skip, 30, |m| {
        m["messageType"] == "unitStatus" && m["isDeltaInfo"] == false
    });
    let reconnect = t.elapsed();

    // Idle: this aosd (connected, N instances) beside one without a cloud (N instances).
    let plain = Node::start(&insecure);
    let f2 = tmp.path().join("plain.yaml");
    std::fs::write(&f2, yaml_for(&host, N, "plain")).unwrap();
    plain.aosd.ok(&["apply", "-f", f2.to_str().unwrap()]);
    wait("plain: all active", 120, || active(&plain) == N as usize);
    std::thread::sleep(Duration::from_secs(5));
    let (cpu_cloud, rss_cloud) = idle(&node, idle_secs);
    let (cpu_plain, rss_plain) = idle(&plain, idle_secs);

    println!(
        "== cloud benchmark (issue 12), {N} instances, debug={}",
        cfg!(debug_assertions)
    );
    println!(
        "desired state -> all active, cloud (cold pull):   {:>8.0} ms",
        ms(by_cloud)
    );
    println!(
        "desired state -> all active, cloud (image cached): {:>7.0} ms",
        ms(by_cloud_cached)
    );
    println!(
        "aosctl apply  -> all active (image cached):        {:>7.0} ms",
        ms(by_apply)
    );
    println!("reconnect: cloud back -> full unit status:         {:>7.0} ms (backoff 200 ms doubling to 1 s)", ms(reconnect));
    println!("aosd idle over {idle_secs} s with the cloud connected: {cpu_cloud:.2} % CPU, {rss_cloud:.1} MiB RSS");
    println!("aosd idle over {idle_secs} s without a cloud:          {cpu_plain:.2} % CPU, {rss_plain:.1} MiB RSS");
    println!(
        "connector's share: {:+.2} % CPU, {:+.1} MiB",
        cpu_cloud - cpu_plain,
        rss_cloud - rss_plain
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// An Item `svc-<name>` and `n` Instances `svc-<name>-<i>` of it.
fn yaml_for(host: &str, n: u64, name: &str) -> String {
    let mut yaml = format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: svc-{name}\nspec:\n  itemId: svc\n  version: 1.0.0\n  source:\n    registry: {host}/aos/svc:1.0.0\n---\n"
    );
    for i in 0..n {
        yaml += &format!(
            "apiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: svc-{name}-{i}\nspec:\n  itemId: svc\n  version: 1.0.0\n  subjectId: s\n  index: {i}\n  runtime: container\n---\n"
        );
    }
    yaml
}
