//! A network across the nodes of a unit: two aosd on one etcd cluster, one network; each node
//! takes its own slice of the subnet (its bridge the slice's gateway, its instances addresses
//! from it), and an instance on one node reaches an instance on the other by its DNS name. On
//! one host the slices route between the nodes' bridges; on two hosts (network namespaces on a
//! LAN of the test's own) each routes the other's slice via the other's address. Each node's
//! firewall lets the network's traffic pass between the slices. Deleting everything leaves no
//! bridge and no route of either node.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aos_e2e::hosts::Lan;
use aos_e2e::net::{links, network, on};
use aos_e2e::node::{instance, item, pack, service};
use aos_e2e::unit::Unit;
use aos_e2e::{condition, Aosd};
use aos_network_controller::ipam::Cidr;
use aos_network_controller::netlink::ROUTE_PROTOCOL;
use aos_network_controller::Names;
use std::process::Command;

fn names(node: &Aosd) -> Names {
    Names::new(
        &node.path().join("data").display().to_string(),
        "/run/netns".into(),
    )
}

/// Removes the bridges, namespaces and tables a failed run left.
struct Leftovers(Vec<(Names, &'static str)>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for (names, instance) in &self.0 {
            let _ = aos_network_controller::netlink::delete_netns(&names.netns(instance));
            for l in [names.bridge("span"), names.host_veth(instance)] {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &l])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            let _ = std::process::Command::new("nft")
                .args(["delete", "table", "inet", &names.table()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn logs_show(node: &Aosd, name: &str, text: &str) {
    let start = Instant::now();
    loop {
        let out = node.run(&["logs", name]);
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        if s.contains(text) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "logs of {name} never showed {text:?}: {s}\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Web on the first node, a client of it on the second, both on network `span`: each node's
/// slice holds its instance's address, and the client reaches the web by name.
fn across(unit: &Unit, [na, nb]: [&str; 2], subnet: &str) -> serde_json::Value {
    let (a, b) = (&unit.nodes[0], &unit.nodes[1]);
    let web = service(
        &a.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nmkdir -p /tmp/www && echo \"hello from $AOS_INSTANCE_INDEX\" > /tmp/www/hello\nexec /bin/busybox httpd -f -p 8080 -h /tmp/www\n",
    );
    let client = service(
        &a.path().join("client"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nwhile true; do /usr/bin/curl -s --max-time 1 \"http://$PEER:8080/hello\"; sleep 0.3; done\n",
    );
    let mut yaml = network("span", subnet);
    for (dir, id) in [(&web, "web"), (&client, "client")] {
        let archive = dir.with_extension("tar");
        pack(a, dir, &archive);
        yaml += &item(id, "v1", &format!("archive: {}", archive.display()));
    }
    yaml += &instance(
        "web-0",
        "web",
        "v1",
        0,
        &format!("  nodeName: {na}\n{}", on("span", "")),
    );
    let env = "  env:\n  - name: PEER\n    value: 0.e2e.web\n";
    yaml += &instance(
        "client-0",
        "client",
        "v1",
        0,
        &format!("  nodeName: {nb}\n{}", on("span", env)),
    );
    let f = a.path().join("span.yaml");
    std::fs::write(&f, yaml).unwrap();
    a.ok(&["apply", "-f", f.to_str().unwrap()]);

    let active = |v: &serde_json::Value| v["status"]["state"] == "active";
    let w = a.until("instance", "web-0", 120, active);
    let c = a.until("instance", "client-0", 120, active);
    // Each node has its slice; each instance's address is in its node's.
    let net = a.until("network", "span", 30, |v| {
        v["status"]["slices"]
            .as_object()
            .is_some_and(|s| s.len() == 2)
            && condition(v, "RoutesReady")["status"] == "True"
    });
    let slice = |node: &str| Cidr::parse(net["status"]["slices"][node].as_str().unwrap()).unwrap();
    let (sa, sb) = (slice(na), slice(nb));
    assert_ne!(sa, sb, "{net:#}");
    assert_eq!(sa.len, 28, "a /24 with node_slice_bits 4: {net:#}");
    let ip = |v: &serde_json::Value| v["status"]["ip"].as_str().unwrap().parse().unwrap();
    assert!(sa.contains(ip(&w)), "web-0 {} outside {sa}", ip(&w));
    assert!(sb.contains(ip(&c)), "client-0 {} outside {sb}", ip(&c));

    let wide = a.ok(&["get", "networks", "-o", "wide"]);
    assert!(wide.contains(&format!("{na}={sa},{nb}={sb}")), "{wide}");
    assert!(wide.contains("<per node>"), "{wide}");

    // Across the nodes, by name through the second node's resolver.
    logs_show(b, "client-0", "hello from 0");
    net
}

/// Deletes everything: each node removes its own bridge, then the network goes.
fn delete_all(unit: &Unit) {
    let a = &unit.nodes[0];
    a.ok(&["delete", "instance", "web-0", "client-0", "--wait"]);
    a.ok(&["delete", "network", "span"]);
    a.ok(&["wait", "network/span", "--for=delete", "--timeout=30s"]);
}

#[test]
fn instances_on_two_nodes_of_one_host_reach_each_other_by_name() {
    let unit = Unit::start(&[("node-a", ""), ("node-b", "")]);
    let (a, b) = (&unit.nodes[0], &unit.nodes[1]);
    let _leftovers = Leftovers(vec![(names(a), "web-0"), (names(b), "client-0")]);
    across(&unit, ["node-a", "node-b"], "172.29.7.0/24");
    delete_all(&unit);
    let l = links();
    for node in [a, b] {
        assert!(!l.contains(&names(node).bridge("span")), "{l}");
    }
}

#[test]
fn instances_on_two_hosts_reach_each_other_through_routes_via_the_nodes_addresses() {
    let lan = Lan::new(2);
    let unit = Unit::start_on(&lan);
    let (a, b) = (&unit.nodes[0], &unit.nodes[1]);
    let _leftovers = Leftovers(vec![(names(a), "web-0"), (names(b), "client-0")]);
    let net = across(&unit, ["node-0", "node-1"], "172.29.8.0/24");
    // Each host routes the other's slice via the other's LAN address, with aosd's protocol.
    for (i, other) in [(0, 1), (1, 0)] {
        let slice = net["status"]["slices"][format!("node-{other}")]
            .as_str()
            .unwrap();
        let out = Command::new("ip")
            .arg("-n")
            .arg(lan.hosts[i].netns.file_name().unwrap())
            .args(["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])
            .output()
            .unwrap();
        let routes = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            routes.trim(),
            format!("{slice} via {} dev eth0", lan.hosts[other].addr),
            "host {i}"
        );
    }
    let nodes = a.ok(&["get", "nodes", "-o", "wide"]);
    for h in &lan.hosts {
        assert!(nodes.contains(&format!(" {} ", h.addr)), "{nodes}");
    }
    delete_all(&unit);
    // The routes went with the network.
    for h in &lan.hosts {
        let out = Command::new("ip")
            .arg("-n")
            .arg(h.netns.file_name().unwrap())
            .args(["-4", "route", "show", "proto", &ROUTE_PROTOCOL.to_string()])
            .output()
            .unwrap();
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
