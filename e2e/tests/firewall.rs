//! What the firewall and the network checks refuse, end to end: host ports outside the range,
//! taken or in use; subnets that collide or change; instances reaching the host beyond their
//! resolver, or outside names from a closed network. And an adopted task gets the address a
//! crash kept from its status.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use aos_e2e::net::*;
use aos_e2e::node::{free_port, instance, service, Node};

/// `lastError` of an object (its reason and message).
fn failure(v: &serde_json::Value) -> String {
    v["status"]["lastError"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn host_ports_outside_the_range_taken_or_in_use_on_the_host_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["pub"],
        instances: vec!["a-0", "b-0", "ssh-0", "busy-0"],
    };
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 3600\n",
    );
    node.install(&web, "web");
    let port = free_port();
    let host_listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = host_listener.local_addr().unwrap().port();
    let publish = |p: u16| on("pub", &format!("    hostPorts: [\"{p}:8080\"]\n"));
    node.apply(
        &(network("pub", "172.29.5.0/24") + &instance("a-0", "web", "v1", 0, &publish(port))),
    );
    node.active("a-0");
    node.apply(
        &(instance("b-0", "web", "v1", 1, &publish(port))
            + &instance("ssh-0", "web", "v1", 2, &publish(22))
            + &instance("busy-0", "web", "v1", 3, &publish(busy))),
    );
    for (name, why) in [
        ("b-0", "published by instance a-0"),
        ("ssh-0", "outside the node's range 1024-65535"),
        ("busy-0", "in use by a service of the host"),
    ] {
        let v = node.until_instance(name, 30, |v| failure(v).contains("HostPortUnavailable"));
        assert!(failure(&v).contains(why), "{name}: {}", failure(&v));
        assert_ne!(v["status"]["state"], "active");
    }
    // Once a-0 is gone, b-0 takes the port.
    node.aosd.ok(&["delete", "instance", "a-0", "--wait"]);
    node.until_instance("b-0", 60, |v| v["status"]["state"] == "active");
    node.aosd
        .ok(&["delete", "instance", "b-0", "ssh-0", "busy-0", "--wait"]);
    node.aosd.ok(&["delete", "network", "pub", "--wait"]);
    drop(host_listener);
}

#[test]
fn explicit_subnets_are_checked_like_chosen_ones_and_do_not_change() {
    let node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names,
        networks: vec!["x", "y", "z"],
        instances: vec![],
    };
    for (subnet, why) in [
        ("127.0.0.0/16", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("224.0.0.0/8", "multicast"),
    ] {
        let f = node.aosd.path().join("bad.yaml");
        std::fs::write(&f, network("bad", subnet)).unwrap();
        let out = node.aosd.run(&["apply", "-f", f.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(why),
            "{subnet}: {err}"
        );
    }
    node.apply(&network("x", "172.29.9.0/24"));
    node.aosd
        .until("network", "x", 30, |v| v["status"]["bridge"].is_string());
    node.apply(&network("y", "172.29.9.128/25"));
    let y = node.aosd.until("network", "y", 30, |v| {
        failure(v).contains("SubnetConflict")
    });
    assert!(failure(&y).contains("network x"), "{}", failure(&y));
    // A subnet that a host route already covers (the host's own interfaces).
    let routes = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "route", "show", "scope", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    if let Some(route) = routes.lines().find_map(|l| {
        let r = l.split_whitespace().next()?;
        (r.contains('/') && !r.starts_with("172.29.")).then(|| r.to_string())
    }) {
        node.apply(&network("z", &route));
        let z = node.aosd.until("network", "z", 30, |v| {
            failure(v).contains("SubnetConflict")
        });
        assert!(failure(&z).contains("host's route"), "{}", failure(&z));
    }
    // The subnet of a network does not change under its bridge and instances.
    let f = node.aosd.path().join("x2.yaml");
    std::fs::write(&f, network("x", "172.29.10.0/24")).unwrap();
    let out = node.aosd.run(&["apply", "-f", f.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot change from 172.29.9.0/24"), "{err}");
    node.aosd.ok(&[
        "delete",
        "network",
        "x",
        "y",
        "z",
        "--ignore-not-found",
        "--wait",
    ]);
}

#[test]
fn an_instance_reaches_only_its_resolver_on_the_host_and_a_closed_network_resolves_no_outside_name()
{
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names: names.clone(),
        networks: vec!["closed"],
        instances: vec!["probe-0"],
    };
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = host_service.local_addr().unwrap().port();
    let host_ip = {
        let out = Command::new("ip")
            .args(["-4", "route", "get", "1.1.1.1"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "src")
            .nth(1)
            .unwrap()
            .to_string()
    };
    let script = r#"#!/bin/sh
exec /usr/bin/python3 - "$HOST_IP" "$PORT" <<'PY'
import socket, sys, time
gw = open("/etc/resolv.conf").read().split("nameserver")[1].split()[0]
for host in (gw, sys.argv[1]):
    try:
        socket.create_connection((host, int(sys.argv[2])), timeout=2).close()
        print("reach", host, "ok", flush=True)
    except OSError as e:
        print("reach", host, "no", flush=True)
for name in ("0.e2e.probe", "example.com", "localhost.localdomain.example"):
    try:
        socket.gethostbyname(name)
        print("resolve", name, "ok", flush=True)
    except OSError:
        print("resolve", name, "no", flush=True)
print("done", flush=True)
time.sleep(3600)
PY
"#;
    let dir = service(
        &tmp.path().join("probe"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        script,
    );
    node.install(&dir, "probe");
    let closed =
        network("closed", "172.29.12.0/24").replace("allowOutside: true", "allowOutside: false");
    let env = format!(
        "  env:\n  - name: HOST_IP\n    value: \"{host_ip}\"\n  - name: PORT\n    value: \"{port}\"\n"
    );
    node.apply(&(closed + &instance("probe-0", "probe", "v1", 0, &(env + &on("closed", "")))));
    let out = node.logs_show("probe-0", "done");
    assert!(
        out.contains("reach 172.29.12.1 no"),
        "the gateway's other ports: {out}"
    );
    assert!(
        out.contains(&format!("reach {host_ip} no")),
        "the host's address: {out}"
    );
    assert!(
        out.contains("resolve 0.e2e.probe ok"),
        "its own names: {out}"
    );
    assert!(
        out.contains("resolve example.com no"),
        "no forwarding: {out}"
    );
    node.aosd.ok(&["delete", "instance", "probe-0", "--wait"]);
    node.aosd.ok(&["delete", "network", "closed", "--wait"]);
    drop(host_service);
}

#[test]
fn a_task_adopted_after_a_crash_before_its_status_write_gets_its_address_start_and_window() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start("");
    let names = names_of(&node);
    let _leftovers = Leftovers {
        names,
        networks: vec!["adopt"],
        instances: vec!["a-0"],
    };
    let dir = service(
        &tmp.path().join("a"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 3600\n",
    );
    node.install(&dir, "a");
    node.apply(
        &(network("adopt", "172.29.14.0/24") + &instance("a-0", "a", "v1", 0, &on("adopt", ""))),
    );
    let before = node.active("a-0");
    let ip = before["status"]["ip"].clone();
    assert!(ip.is_string());
    // aosd dies right after the task started: the status holds none of it.
    let _ = node.aosd.child.kill();
    let _ = node.aosd.child.wait();
    aos_e2e::edit_stored(
        &node.aosd.path().join("data/store.redb"),
        "Instance/a-0",
        |v| {
            let s = v["status"].as_object_mut().unwrap();
            for k in ["ip", "startedAt", "windowStart", "windowStarts", "pid"] {
                s.remove(k);
            }
            s.insert("state".into(), "activating".into());
        },
    );
    node.aosd.crash_and_restart();
    let after = node.until_instance("a-0", 30, |v| {
        v["status"]["state"] == "active" && v["status"]["ip"].is_string()
    });
    assert_eq!(after["status"]["ip"], ip, "the same address");
    assert_eq!(
        after["status"]["pid"], before["status"]["pid"],
        "adopted, not restarted"
    );
    assert!(after["status"]["startedAt"].is_string(), "{after}");
    assert!(after["status"]["windowStart"].is_string(), "{after}");
    node.aosd.ok(&["delete", "instance", "a-0", "--wait"]);
    node.aosd.ok(&["delete", "network", "adopt", "--wait"]);
}
