//! The network benchmark of `hack/bench/net.sh` (issue 5), in one run: the time to set up and
//! tear down the network of one instance (namespace, veth on the bridge, address, route) by
//! aosd's attacher, beside `netavark setup`/`teardown` of an equivalent bridge network (with
//! the `ip netns add` it needs first); and the time to bring up 100 instances' networks.
// A benchmark: it prints its figures and stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aos_api::{NetworkSpec, Object};
use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::Links;
use aos_network_controller::{Attacher, Names};
use aos_ports::Networks;
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

const ROUNDS: usize = 10;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn netavark() -> Option<String> {
    ["/usr/lib/podman/netavark", "/usr/libexec/podman/netavark"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .map(str::to_string)
}

fn run_netavark(bin: &str, dir: &std::path::Path, cmd: &str, ns: &str, input: &str) {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(dir)
        .args([cmd, ns])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "netavark {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::var("BENCH_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::default()).unwrap());
    let names = Names::new(
        &format!("bench-net-{}", std::process::id()),
        "/run/netns".into(),
    );
    let links = Links::new().unwrap();
    let subnet = Cidr::parse("172.30.250.0/24").unwrap();
    let bridge = names.bridge("bench");
    links.ensure_bridge(&bridge, &subnet).await.unwrap();
    let api = Api::<NetworkSpec>::new(backend.clone());
    api.apply(&Object::new(
        "bench",
        NetworkSpec {
            subnet: Some(subnet.to_string()),
            allow_outside: true,
            ..Default::default()
        },
    ))
    .await
    .unwrap();
    api.update_status("bench", |s| {
        s.subnet = Some(subnet.to_string());
        s.gateway = Some(subnet.gateway().to_string());
        s.bridge = Some(bridge.clone());
    })
    .await
    .unwrap();
    let attacher = Attacher::new(
        backend.clone(),
        names.clone(),
        links.clone(),
        aos_network_controller::hostports::PortRange::parse("1024-65535").expect("a range"),
    );

    let (mut up, mut down) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let name = format!("one-{r}");
        let t = Instant::now();
        attacher
            .attach(&name, "bench", Default::default())
            .await
            .unwrap();
        up.push(ms(t.elapsed()));
        let t = Instant::now();
        attacher.detach(&name, "bench").await.unwrap();
        down.push(ms(t.elapsed()));
    }

    let mut peer = None;
    if let Some(bin) = netavark() {
        // netavark leaves its chains in iptables' tables: remove the tables it made.
        let had = |t: &str| {
            Command::new("nft")
                .args(["list", "table", "ip", t])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        let made_by_peer: Vec<&str> = ["nat", "filter"].into_iter().filter(|t| !had(t)).collect();
        let dir = tempfile::tempdir().unwrap();
        let nbridge = format!("nvb{}", std::process::id() % 100000);
        let id = format!("{:064x}", std::process::id());
        let (mut nsadd, mut setup, mut teardown) = (Vec::new(), Vec::new(), Vec::new());
        for r in 0..ROUNDS {
            let ns = format!("nvbench-{}-{r}", std::process::id());
            let input = serde_json::json!({
                "container_id": id, "container_name": "bench",
                "networks": {"benchnet": {"interface_name": "eth0", "static_ips": ["172.30.251.2"]}},
                "network_info": {"benchnet": {
                    "name": "benchnet", "id": id, "driver": "bridge", "network_interface": nbridge,
                    "subnets": [{"subnet": "172.30.251.0/24", "gateway": "172.30.251.1"}],
                    "ipv6_enabled": false, "internal": false, "dns_enabled": false,
                    "ipam_options": {"driver": "host-local"}
                }},
                "port_mappings": null
            })
            .to_string();
            let t = Instant::now();
            assert!(Command::new("ip")
                .args(["netns", "add", &ns])
                .status()
                .unwrap()
                .success());
            nsadd.push(ms(t.elapsed()));
            let path = format!("/run/netns/{ns}");
            let t = Instant::now();
            run_netavark(&bin, dir.path(), "setup", &path, &input);
            setup.push(ms(t.elapsed()));
            let t = Instant::now();
            run_netavark(&bin, dir.path(), "teardown", &path, &input);
            let _ = Command::new("ip").args(["netns", "del", &ns]).status();
            teardown.push(ms(t.elapsed()));
        }
        let _ = Command::new("ip")
            .args(["link", "del", &nbridge])
            .stderr(Stdio::null())
            .status();
        for t in made_by_peer {
            let _ = Command::new("nft")
                .args(["delete", "table", "ip", t])
                .status();
        }
        peer = Some((median(&nsadd), median(&setup), median(&teardown)));
    }

    let names_n: Vec<String> = (0..count).map(|i| format!("many-{i}")).collect();
    let t = Instant::now();
    for n in &names_n {
        attacher
            .attach(n, "bench", Default::default())
            .await
            .unwrap();
    }
    let many_up = t.elapsed();
    let t = Instant::now();
    for n in &names_n {
        attacher.detach(n, "bench").await.unwrap();
    }
    let many_down = t.elapsed();
    links.delete(&bridge).await.unwrap();

    println!("network of one instance (median of {ROUNDS}):");
    println!(
        "  aosd attach (netns + veth + address + route)   {:7.1} ms",
        median(&up)
    );
    println!(
        "  aosd detach                                    {:7.1} ms",
        median(&down)
    );
    match peer {
        Some((nsadd, setup, teardown)) => {
            println!("  ip netns add + netavark setup                  {:7.1} ms ({nsadd:.1} + {setup:.1})", nsadd + setup);
            println!("  netavark teardown + ip netns del               {teardown:7.1} ms");
            println!(
                "  ratio (setup)                                  {:7.2}x",
                median(&up) / (nsadd + setup)
            );
        }
        None => println!("  netavark not found (apt install netavark): no peer figure"),
    }
    println!(
        "{count} instances' networks up: {:.2} s; down: {:.2} s",
        many_up.as_secs_f64(),
        many_down.as_secs_f64()
    );
}
