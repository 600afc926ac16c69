//! Instance networking end to end with a real containerd, real namespaces, veths, a bridge and
//! nftables: two instances of one network reach each other by DNS name, the host reaches them
//! through the bridge, addresses survive a `kill -9` of aosd, a network deleted while in use
//! waits for its instances, and deleting everything leaves no namespace, link or table of ours.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use aos_e2e::net::*;
use aos_e2e::node::{free_port, instance, service, Node};

#[test]
fn two_instances_of_a_network_reach_each_other_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["n1"],
        instances: vec!["web-0", "client-0"],
    };
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nmkdir -p /tmp/www && echo \"hello from $AOS_INSTANCE_INDEX\" > /tmp/www/hello\nexec /bin/busybox httpd -f -p 8080 -h /tmp/www\n",
    );
    let client = service(
        &tmp.path().join("client"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nwhile true; do /usr/bin/curl -s --max-time 1 \"http://$PEER:8080/hello\"; sleep 0.3; done\n",
    );
    node.install(&web, "web");
    node.install(&client, "client");
    node.apply(
        &(network("n1", "172.29.1.0/24") + &instance("web-0", "web", "v1", 0, &on("n1", ""))),
    );
    let w = node.active("web-0");
    let ip = w["status"]["ip"]
        .as_str()
        .expect("an address in status")
        .to_string();
    let net = node.json("network", "n1");
    let subnet = net["status"]["subnet"].as_str().unwrap().to_string();
    assert_eq!(subnet, "172.29.1.0/24", "{net:#}");
    assert_eq!(net["status"]["allocations"]["web-0"], ip.as_str());

    // Another instance of the network reaches it by name, through the network's resolver.
    let env = "  env:\n  - name: PEER\n    value: 0.e2e.web\n".to_string();
    node.apply(&instance("client-0", "client", "v1", 0, &on("n1", &env)));
    node.active("client-0");
    node.logs_show("client-0", "hello from 0");
    let net = node.json("network", "n1");
    assert!(
        net["status"]["conditions"].to_string().contains("DnsReady"),
        "{net:#}"
    );
    // The host reaches it through the bridge.
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2", &format!("http://{ip}:8080/hello")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from 0\n");
    assert!(links().contains(&names.bridge("n1")));
    let table = Command::new("nft")
        .args(["list", "table", "inet", &names.table()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains(&format!(
            "ip saddr {subnet} ip daddr != {subnet} masquerade"
        )),
        "{table}"
    );
    assert!(names.netns("web-0").exists());

    // kill -9 of aosd: the task, its namespace and its address stay.
    let pid = w["status"]["pid"].as_u64();
    node.aosd.crash_and_restart();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let again = node.active("web-0");
    assert_eq!(again["status"]["pid"].as_u64(), pid, "{}", node.aosd.log());
    assert_eq!(again["status"]["ip"], ip.as_str());

    // A network deleted while instances are on it waits for them (Terminating, its bridge up).
    node.aosd.ok(&["delete", "network", "n1"]);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let n = node.json("network", "n1");
    assert!(n["metadata"]["deletionTimestamp"].is_string(), "{n:#}");
    assert!(
        links().contains(&names.bridge("n1")),
        "its bridge stays while in use"
    );
    // Deleting everything leaves no namespace, link or table of ours.
    node.aosd
        .ok(&["delete", "instance", "web-0", "client-0", "--wait"]);
    node.aosd
        .ok(&["wait", "network/n1", "--for=delete", "--timeout=30s"]);
    let l = links();
    for n in [
        names.bridge("n1"),
        names.host_veth("web-0"),
        names.host_veth("client-0"),
    ] {
        assert!(!l.contains(&n), "link {n} left:\n{l}");
    }
    for i in ["web-0", "client-0"] {
        assert!(
            !Path::new(&names.netns(i)).exists(),
            "namespace of {i} left"
        );
    }
    let tables = String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!tables.contains(&names.table()), "{tables}");
}

#[test]
fn another_network_reaches_only_allowed_exposed_ports_and_a_published_port_answers_on_localhost() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["front", "back"],
        instances: vec!["web-0", "allowed-0", "denied-0"],
    };
    // web serves 8080 (exposed) and 9090 (not exposed).
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nmkdir -p /tmp/www && echo hello > /tmp/www/hello\n/bin/busybox httpd -p 9090 -h /tmp/www\nexec /bin/busybox httpd -f -p 8080 -h /tmp/www\n",
    );
    let client = service(
        &tmp.path().join("client"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nwhile true; do for p in 8080 9090; do if /usr/bin/curl -s --max-time 1 -o /dev/null \"http://$PEER:$p/hello\"; then echo \"ok $p\"; else echo \"no $p\"; fi; done; sleep 0.2; done\n",
    );
    node.install(&web, "web");
    node.install(&client, "client");
    let host_port = free_port();
    let web_net = format!(
        "  network:\n    networkId: back\n    exposedPorts: [\"8080\"]\n    hostPorts: [\"{host_port}:8080\"]\n"
    );
    node.apply(
        &(network("back", "172.29.2.0/24")
            + &network("front", "172.29.3.0/24")
            + &instance("web-0", "web", "v1", 0, &web_net)),
    );
    let ip = node.active("web-0")["status"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    let client_net = |allowed: &str| {
        format!("  env:\n  - name: PEER\n    value: \"{ip}\"\n  network:\n    networkId: front\n    allowedConnections: [{allowed}]\n")
    };
    node.apply(
        &(instance(
            "allowed-0",
            "client",
            "v1",
            0,
            &client_net("\"web/8080\", \"web/9090\""),
        ) + &instance("denied-0", "client", "v1", 1, &client_net(""))),
    );
    node.active("allowed-0");
    node.active("denied-0");
    // Allowed and exposed: reached. Allowed but not exposed: not. Not allowed: not.
    let allowed = node.logs_show("allowed-0", "ok 8080");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let allowed = node.aosd.ok(&["logs", "allowed-0"]) + &allowed;
    assert!(!allowed.contains("ok 9090"), "{allowed}");
    assert!(allowed.contains("no 9090"), "{allowed}");
    let denied = node.logs_show("denied-0", "no 8080");
    assert!(
        !denied.contains("ok 8080") && !denied.contains("ok 9090"),
        "{denied}"
    );
    // Traffic counters move (sampled every second here).
    let v = node.until_instance("allowed-0", 30, |v| {
        v["status"]["usage"]["txBytes"].as_u64().unwrap_or(0) > 0
            && v["status"]["usage"]["rxBytes"].as_u64().unwrap_or(0) > 0
    });
    assert!(v["status"]["usage"]["txBytes"].as_u64() > Some(100));
    // The published port answers on the host's loopback.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "2",
            &format!("http://127.0.0.1:{host_port}/hello"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    // From the host: other users reach the exposed and the published port only; root (as
    // aosd's probes) reaches every port.
    let fetch = |uid: u32, url: &str| {
        use std::os::unix::process::CommandExt;
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "2", url])
            .uid(uid)
            .gid(uid)
            .status()
            .unwrap()
            .success()
    };
    let nobody = 65534;
    assert!(fetch(nobody, &format!("http://{ip}:8080/hello")));
    assert!(fetch(
        nobody,
        &format!("http://127.0.0.1:{host_port}/hello")
    ));
    assert!(
        !fetch(nobody, &format!("http://{ip}:9090/hello")),
        "not exposed"
    );
    assert!(fetch(0, &format!("http://{ip}:9090/hello")));

    node.aosd.ok(&[
        "delete",
        "instance",
        "web-0",
        "allowed-0",
        "denied-0",
        "--wait",
    ]);
    node.aosd
        .ok(&["delete", "network", "front", "back", "--wait"]);
    let l = links();
    for n in ["front", "back"] {
        assert!(!l.contains(&names.bridge(n)), "bridge of {n} left");
    }
}

#[test]
fn an_upload_speed_limit_holds_within_ten_percent_and_an_upload_limit_raises_its_condition() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["shaped"],
        instances: vec!["big-0"],
    };
    let rate: u64 = 1 << 20;
    let web = service(
        &tmp.path().join("big"),
        &format!(
            "configuration:\n  cmd: /usr/bin/svc.sh\n  exposedPorts: [\"8080\"]\n  quotas:\n    uploadSpeed: {rate}\n    uploadLimit: 1000000\n"
        ),
        "#!/bin/sh\nmkdir -p /tmp/www && /bin/busybox dd if=/dev/zero of=/tmp/www/big bs=1048576 count=4 2>/dev/null\nexec /bin/busybox httpd -f -p 8080 -h /tmp/www\n",
    );
    node.install(&web, "big");
    node.apply(
        &(network("shaped", "172.29.4.0/24")
            + &instance("big-0", "big", "v1", 0, &on("shaped", ""))),
    );
    let ip = node.active("big-0")["status"]["ip"]
        .as_str()
        .unwrap()
        .to_string();
    // A transfer from the instance's namespace to the host, through the bridge.
    let url = format!("http://{ip}:8080/big");
    let mut speed = 0.0;
    for _ in 0..20 {
        let out = Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "20",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{speed_download}",
                &url,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(s) = text.strip_prefix("200 ") {
            speed = s.trim().parse().unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let ratio = speed / rate as f64;
    assert!(
        (0.9..=1.1).contains(&ratio),
        "{speed} B/s is {ratio:.3} of {rate}"
    );
    // The sample that first passed the limit may precede the transfer's end: wait for one
    // that counts all of it.
    node.until_instance("big-0", 30, |v| {
        let over = v["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "UploadLimitExceeded"))
            .is_some_and(|c| c["status"] == "True");
        over && v["status"]["usage"]["txBytes"].as_u64() > Some(4_000_000)
    });
    node.aosd.ok(&["delete", "instance", "big-0", "--wait"]);
    node.aosd.ok(&["delete", "network", "shaped", "--wait"]);
}

/// Whether this kernel can make VLAN links (8021q), tried on a throwaway veth.
fn kernel_has_vlans(base: &str) -> bool {
    let vlan = format!("{base}v");
    let ok = Command::new("ip")
        .args([
            "link", "add", "link", base, "name", &vlan, "type", "vlan", "id", "7",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let _ = Command::new("ip")
        .args(["link", "del", &vlan])
        .stderr(std::process::Stdio::null())
        .status();
    ok
}

#[test]
fn a_network_with_a_vlan_id_puts_a_vlan_link_of_the_uplink_on_its_bridge_or_says_why_not() {
    // The uplink: one end of a veth pair (this kernel may lack dummy links).
    let uplink = format!("aosup{}", std::process::id() % 100_000);
    struct Uplink(String);
    impl Drop for Uplink {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }
    assert!(Command::new("ip")
        .args([
            "link",
            "add",
            &uplink,
            "type",
            "veth",
            "peer",
            "name",
            &format!("{uplink}p")
        ])
        .status()
        .unwrap()
        .success());
    let _uplink = Uplink(uplink.clone());
    let vlans = kernel_has_vlans(&uplink);
    let node = Node::start(&format!("[network]\nuplink = \"{uplink}\"\n"));
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["tagged"],
        instances: vec![],
    };
    node.apply(&network("tagged", "172.29.5.0/24").replace("spec:\n", "spec:\n  vlanId: 42\n"));
    let v = node.aosd.until("network", "tagged", 30, |v| {
        v["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "VlanReady"))
    });
    let cond = aos_e2e::condition(&v, "VlanReady");
    if vlans {
        assert_eq!(cond["status"], "True", "{cond}");
        let out = Command::new("ip")
            .args(["-d", "link", "show", &names.vlan("tagged")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("vlan protocol 802.1Q id 42"), "{text}");
        assert!(
            text.contains(&format!("master {}", names.bridge("tagged"))),
            "{text}"
        );
        assert!(text.contains(&format!("@{uplink}")), "{text}");
    } else {
        // Without 8021q the network still works locally and says why it has no VLAN.
        assert_eq!(cond["status"], "False", "{cond}");
        assert_eq!(cond["reason"], "VlanFailed", "{cond}");
        assert!(
            cond["message"].as_str().unwrap().contains("VLAN 42"),
            "{cond}"
        );
        assert!(links().contains(&names.bridge("tagged")));
    }
    node.aosd.ok(&["delete", "network", "tagged", "--wait"]);
    let l = links();
    assert!(
        !l.contains(&names.vlan("tagged")) && !l.contains(&names.bridge("tagged")),
        "{l}"
    );
}
