//! A unit for the unit suites: an etcd cluster of three members on loopback, one containerd,
//! and one aosd per node (own data dir, socket and containerd namespace) sharing the cluster
//! under a prefix of the test's own, with short heartbeats and `placement = "unit"`.

use std::process::Command;

use aos_testkit::containerd::ContainerdProcess;
use aos_testkit::EtcdCluster;
use serde_json::Value;

use crate::node::rand_suffix;
use crate::{condition, Aosd, AosdOptions};

pub struct Unit {
    pub cluster: EtcdCluster,
    pub containerd: ContainerdProcess,
    pub prefix: String,
    /// In the order given to [`Unit::start`].
    pub nodes: Vec<Aosd>,
}

impl Unit {
    /// One aosd per (node id, TOML lines of its `[node.labels]`), each Ready.
    pub fn start(nodes: &[(&str, &str)]) -> Unit {
        let cluster = EtcdCluster::start(3);
        let containerd = ContainerdProcess::start();
        let prefix = format!("/unit-{}-{}/", std::process::id(), rand_suffix());
        let mut unit = Unit {
            cluster,
            containerd,
            prefix,
            nodes: Vec::new(),
        };
        for (id, labels) in nodes {
            let aosd = unit.node(id, labels);
            unit.nodes.push(aosd);
        }
        for (id, _) in nodes {
            unit.nodes[0].until("node", id, 30, |v| {
                condition(v, "Ready")["status"] == "True"
            });
        }
        unit
    }

    /// Starts one more aosd of the unit (not added to `nodes`).
    pub fn node(&self, id: &str, labels: &str) -> Aosd {
        Aosd::start_with(AosdOptions {
            config: Some(format!(
                "[node]\nusage_interval = \"1s\"\nlost_after = \"6s\"\nplacement = \"unit\"\n\
                 [node.labels]\n{labels}\
                 [runtimes.container]\nstop_grace = \"1s\"\nusage_interval = \"1s\"\n\
                 [store]\nbackend = \"etcd\"\n[store.etcd]\nendpoints = {:?}\nprefix = \"{}\"\n",
                self.cluster.endpoints(),
                self.prefix
            )),
            args: vec!["--node-id".into(), id.into()],
            containerd: Some(self.containerd.socket.clone()),
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
