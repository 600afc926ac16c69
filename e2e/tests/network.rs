//! Instance networking end to end with a real containerd, real namespaces, veths, a bridge and
//! nftables: two instances of one network reach each other by DNS name, the host reaches them
//! through the bridge, addresses survive a `kill -9` of aosd, and deleting everything leaves no namespace,
//! link or table of ours.

use std::path::Path;
use std::process::Command;

use aos_e2e::node::{instance, item, pack, service, Node};
use aos_network_controller::Names;

fn network(name: &str) -> String {
    format!("apiVersion: aos.edge/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  allowOutside: true\n---\n")
}

fn on(net: &str, env: &str) -> String {
    format!("  network:\n    networkId: {net}\n{env}")
}

fn links() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// Removes whatever a failed run left of ours: links, namespaces and the table.
struct Leftovers {
    names: Names,
    networks: Vec<&'static str>,
    instances: Vec<&'static str>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mut links: Vec<String> = self.networks.iter().map(|n| self.names.bridge(n)).collect();
        links.extend(self.instances.iter().map(|i| self.names.host_veth(i)));
        for l in links {
            let _ = Command::new("ip")
                .args(["link", "del", &l])
                .stderr(std::process::Stdio::null())
                .status();
        }
        for i in &self.instances {
            let _ = aos_network_controller::netlink::delete_netns(&self.names.netns(i));
        }
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.names.table()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn two_instances_of_a_network_reach_each_other_and_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start("");
    let names = Names::new(
        &node.aosd.path().join("data").display().to_string(),
        "/run/netns".into(),
    );
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
    for (dir, id) in [(&web, "web"), (&client, "client")] {
        let archive = tmp.path().join(format!("{id}.tar"));
        pack(&node.aosd, dir, &archive);
        node.apply(&item(id, "v1", &format!("archive: {}", archive.display())));
    }
    node.apply(&(network("n1") + &instance("web-0", "web", "v1", 0, &on("n1", ""))));
    let w = node.active("web-0");
    let ip = w["status"]["ip"]
        .as_str()
        .expect("an address in status")
        .to_string();
    let net = node.json("network", "n1");
    let subnet = net["status"]["subnet"].as_str().unwrap().to_string();
    assert!(subnet.starts_with("172."), "{net:#}");
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
    assert_eq!(again["status"]["pid"].as_u64(), pid);
    assert_eq!(again["status"]["ip"], ip.as_str());

    // Deleting everything leaves no namespace, link or table of ours.
    node.aosd
        .ok(&["delete", "instance", "web-0", "client-0", "--wait"]);
    node.aosd.ok(&["delete", "network", "n1", "--wait"]);
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
