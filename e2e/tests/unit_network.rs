//! A network across the nodes of a unit: two aosd on one etcd cluster, one network; each node
//! takes its own slice of the subnet (its bridge the slice's gateway, its instances addresses
//! from it), and an instance on one node reaches an instance on the other by its DNS name. On
//! one host the slices route between the nodes' bridges; each node's firewall lets the
//! network's traffic pass between them. Deleting everything leaves no bridge of either node.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use aos_e2e::net::{links, network, on};
use aos_e2e::node::{instance, item, pack, service};
use aos_e2e::unit::Unit;
use aos_e2e::{condition, Aosd};
use aos_network_controller::ipam::Cidr;
use aos_network_controller::Names;

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

#[test]
fn instances_on_two_nodes_of_one_network_reach_each_other_by_name() {
    let unit = Unit::start(&[("node-a", ""), ("node-b", "")]);
    let (a, b) = (&unit.nodes[0], &unit.nodes[1]);
    let _leftovers = Leftovers(vec![(names(a), "web-0"), (names(b), "client-0")]);
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
    let mut yaml = network("span", "172.29.7.0/24");
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
        &format!("  nodeName: node-a\n{}", on("span", "")),
    );
    let env = "  env:\n  - name: PEER\n    value: 0.e2e.web\n";
    yaml += &instance(
        "client-0",
        "client",
        "v1",
        0,
        &format!("  nodeName: node-b\n{}", on("span", env)),
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
    });
    let slice = |node: &str| Cidr::parse(net["status"]["slices"][node].as_str().unwrap()).unwrap();
    let (sa, sb) = (slice("node-a"), slice("node-b"));
    assert_ne!(sa, sb, "{net:#}");
    assert_eq!(sa.len, 28, "a /24 with node_slice_bits 4: {net:#}");
    let ip = |v: &serde_json::Value| v["status"]["ip"].as_str().unwrap().parse().unwrap();
    assert!(sa.contains(ip(&w)), "web-0 {} outside {sa}", ip(&w));
    assert!(sb.contains(ip(&c)), "client-0 {} outside {sb}", ip(&c));
    assert_eq!(condition(&net, "RoutesReady")["status"], "True", "{net:#}");

    // Across the nodes, by name through node-b's resolver.
    logs_show(b, "client-0", "hello from 0");

    // Everything deleted: each node removes its own bridge, then the network goes.
    a.ok(&["delete", "instance", "web-0", "client-0", "--wait"]);
    a.ok(&["delete", "network", "span"]);
    a.ok(&["wait", "network/span", "--for=delete", "--timeout=30s"]);
    let l = links();
    for node in [a, b] {
        assert!(!l.contains(&names(node).bridge("span")), "{l}");
    }
}
