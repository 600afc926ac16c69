//! Networking of instances: the Network controller (a subnet from the pools, a bridge with the
//! gateway address, NAT in one nftables table of ours) and the attachment of an instance (a
//! named network namespace, a veth pair with `eth0` inside, a persistent address, a default
//! route), handed to the Instance controller through its `Networks` port. In a unit each node
//! has a part of every network's subnet and routes to the others' ([`slices`]).

mod attach;
mod controller;
pub mod dns;
pub mod hostports;
pub mod ipam;
pub mod nat;
pub mod netlink;
pub mod shaping;
pub mod slices;
mod wiring;

use std::path::PathBuf;

use aos_reconcile::Reason;
use aos_store::StoreError;
use sha2::Digest;

pub use attach::Attacher;
pub use controller::NetworkReconciler;
pub use wiring::controller;

/// The finalizer that keeps a Network until its bridge and rules are gone.
pub const FINALIZER: &str = "aos.edge/network";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: Box<rtnetlink::Error>,
    },
    /// A link that must be there is not.
    #[error("{0}")]
    LinkMissing(String),
    /// A system call (a namespace's mount or `setns`).
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: nix::errno::Errno,
    },
    /// A blocking step (namespace work, the firewall) died before it answered.
    #[error("a blocking step failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("network namespace: {0}")]
    Netns(String),
    #[error("firewall: {0}")]
    Firewall(String),
    #[error("{0}")]
    Config(String),
    #[error("no free subnet in the pools (every one overlaps a network or a host route)")]
    NoSubnet,
    #[error("the subnet is taken: {0}")]
    SubnetConflict(String),
    #[error("{0}")]
    HostPort(String),
    #[error("{0}")]
    NoSlice(String),
    #[error("network {0} has no free address")]
    NoAddress(String),
    #[error("network {0} is not ready")]
    NotReady(String),
}

impl Reason for NetError {
    fn reason(&self) -> &'static str {
        match self {
            NetError::Store(_) => "StoreError",
            NetError::Netlink { .. } => "NetlinkFailed",
            NetError::Io { .. } => "IoError",
            NetError::Netns(_) | NetError::Sys { .. } => "NetnsFailed",
            NetError::Blocking(_) => "InternalError",
            NetError::LinkMissing(_) => "LinkMissing",
            NetError::Firewall(_) => "FirewallFailed",
            NetError::Config(_) => "InvalidConfig",
            NetError::NoSubnet => "NoSubnet",
            NetError::SubnetConflict(_) => "SubnetConflict",
            NetError::HostPort(_) => "HostPortUnavailable",
            NetError::NoAddress(_) => "NoAddress",
            NetError::NoSlice(_) => "NoSlice",
            NetError::NotReady(_) => aos_api::condition::reason::NETWORK_NOT_READY,
        }
    }
}

/// Names of host objects: short (links hold 15 bytes) and unique per aosd (derived from its
/// data directory), so that several aosd on one host never share a link or a table.
#[derive(Clone, Debug)]
pub struct Names {
    scope: String,
    /// Where named namespaces are bind-mounted (`/run/netns`, as `ip netns` has them).
    pub netns_dir: PathBuf,
}

impl Names {
    pub fn new(scope: &str, netns_dir: PathBuf) -> Names {
        Names {
            scope: scope.to_string(),
            netns_dir,
        }
    }

    fn hash(&self, kind: &str, name: &str) -> String {
        let d = sha2::Sha256::digest(format!("{}\0{kind}\0{name}", self.scope));
        hex::encode(d)[..10].to_string()
    }

    pub fn bridge(&self, network: &str) -> String {
        format!("aosb{}", self.hash("bridge", network))
    }

    /// The VLAN link of a network on the uplink.
    pub fn vlan(&self, network: &str) -> String {
        format!("aosl{}", self.hash("vlan", network))
    }

    pub fn host_veth(&self, instance: &str) -> String {
        format!("aosv{}", self.hash("veth", instance))
    }

    pub fn netns(&self, instance: &str) -> PathBuf {
        self.netns_dir
            .join(format!("aos-{}", self.hash("netns", instance)))
    }

    /// The nftables table of this aosd.
    pub fn table(&self) -> String {
        format!("aosd_{}", &self.hash("table", "")[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_in_a_link_name_and_differ_between_aosds() {
        let a = Names::new("/var/lib/aosd", "/run/netns".into());
        let b = Names::new("/tmp/other", "/run/netns".into());
        assert!(a.bridge("demo").len() <= 15);
        assert!(a.host_veth("svc-0").len() <= 15);
        assert_ne!(a.bridge("demo"), b.bridge("demo"));
        assert_eq!(
            a.bridge("demo"),
            Names::new("/var/lib/aosd", "/x".into()).bridge("demo")
        );
        assert!(a.netns("svc-0").starts_with("/run/netns"));
    }
}
