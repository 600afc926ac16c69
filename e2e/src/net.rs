//! Helpers of the network suites: Network and attachment YAML, the names aosd gives its host
//! objects, and a guard that removes them after a failed test.

use std::process::Command;

use aos_network_controller::Names;

use crate::node::Node;

/// A network with its own subnet: tests run side by side, each with its own aosd, and two
/// aosd picking from the same pool at the same moment could pick the same subnet.
pub fn network(name: &str, subnet: &str) -> String {
    format!("apiVersion: aos.edge/v1alpha1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n  subnet: {subnet}\n  allowOutside: true\n---\n")
}

pub fn on(net: &str, env: &str) -> String {
    format!("  network:\n    networkId: {net}\n{env}")
}

pub fn links() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

/// The names aosd gives its links, namespaces and table (derived from its data dir).
pub fn names_of(node: &Node) -> Names {
    Names::new(
        &node.aosd.path().join("data").display().to_string(),
        "/run/netns".into(),
    )
}

/// Removes whatever a failed run left of ours: links, namespaces and the table.
pub struct Leftovers {
    pub names: Names,
    pub networks: Vec<&'static str>,
    pub instances: Vec<&'static str>,
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let mut links: Vec<String> = self.networks.iter().map(|n| self.names.bridge(n)).collect();
        links.extend(self.networks.iter().map(|n| self.names.vlan(n)));
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
