//! A unit for the unit suites: an etcd cluster of three members on loopback, one containerd,
//! and one aosd per node (own data dir, socket and containerd namespace) sharing the cluster
//! under a prefix of the test's own, with short heartbeats and `placement = "unit"`.

use std::process::Command;

use aos_testkit::containerd::ContainerdProcess;
use aos_testkit::EtcdCluster;
use serde_json::Value;

use crate::hosts::{Host, Lan};
use crate::node::rand_suffix;
use crate::{condition, Aosd, AosdOptions};

pub struct Unit {
    pub cluster: EtcdCluster,
    pub containerd: ContainerdProcess,
    pub prefix: String,
    /// In the order given to [`Unit::start`].
    pub nodes: Vec<Aosd>,
}

impl Drop for Unit {
    /// The aosd processes go first, so that none starts a task while containerd is taken
    /// down (a shim started then outlived the test); the fields are cleaned up after.
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
    }
}

impl Unit {
    /// One aosd per (node id, TOML lines of its `[node.labels]`), each Ready.
    pub fn start(nodes: &[(&str, &str)]) -> Unit {
        let cluster = EtcdCluster::start(3);
        let endpoints = cluster.endpoints();
        let mut unit = Unit::new(cluster);
        for (id, labels) in nodes {
            let aosd = unit.node_with(id, labels, &endpoints, None);
            unit.nodes.push(aosd);
        }
        unit.until_ready(nodes.iter().map(|(id, _)| *id));
        unit
    }

    /// One aosd per host of `lan` (`node-0`, `node-1`, …), each in its host's namespace with
    /// its LAN address as `node.address`, reaching etcd at the LAN's gateway.
    pub fn start_on(lan: &Lan) -> Unit {
        let cluster = EtcdCluster::start_reachable_at(3, lan.gateway);
        let endpoints = cluster.endpoints_at(lan.gateway);
        let mut unit = Unit::new(cluster);
        let ids: Vec<String> = (0..lan.hosts.len()).map(|i| format!("node-{i}")).collect();
        for (id, host) in ids.iter().zip(&lan.hosts) {
            let aosd = unit.node_with(id, "", &endpoints, Some(host));
            unit.nodes.push(aosd);
        }
        unit.until_ready(ids.iter().map(String::as_str));
        unit
    }

    fn new(cluster: EtcdCluster) -> Unit {
        Unit {
            cluster,
            containerd: ContainerdProcess::start(),
            prefix: format!("/unit-{}-{}/", std::process::id(), rand_suffix()),
            nodes: Vec::new(),
        }
    }

    fn until_ready<'a>(&self, ids: impl Iterator<Item = &'a str>) {
        for id in ids {
            self.nodes[0].until("node", id, 30, |v| {
                condition(v, "Ready")["status"] == "True"
            });
        }
    }

    /// Starts one more aosd of the unit (not added to `nodes`).
    pub fn node(&self, id: &str, labels: &str) -> Aosd {
        self.node_with(id, labels, &self.cluster.endpoints(), None)
    }

    fn node_with(&self, id: &str, labels: &str, endpoints: &[String], host: Option<&Host>) -> Aosd {
        let address = host
            .map(|h| format!("address = \"{}\"\n", h.addr))
            .unwrap_or_default();
        Aosd::start_with(AosdOptions {
            config: Some(format!(
                "[node]\nusage_interval = \"1s\"\nlost_after = \"6s\"\nplacement = \"unit\"\n\
                 {address}[node.labels]\n{labels}\
                 [runtimes.container]\nstop_grace = \"1s\"\nusage_interval = \"1s\"\n\
                 [store]\nbackend = \"etcd\"\n[store.etcd]\nendpoints = {endpoints:?}\nprefix = \"{}\"\n",
                self.prefix
            )),
            args: vec!["--node-id".into(), id.into()],
            containerd: Some(self.containerd.socket.clone()),
            netns: host.map(|h| h.netns.clone()),
            ..Default::default()
        })
    }

    /// The containers of one node's namespace.
    pub fn containers(&self, node: &Aosd) -> Vec<String> {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.containerd.socket)
            .args(["-n", &node.namespace().unwrap(), "containers", "ls", "-q"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The node holding the placement lease.
    pub fn leader(&self) -> String {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(self.cluster.endpoints().join(","))
            .args([
                "get",
                &format!("{}Lease/placement", self.prefix),
                "--print-value-only",
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["spec"]["holder"].as_str().unwrap().to_string()
    }
}
