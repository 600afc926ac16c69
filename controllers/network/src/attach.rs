//! Attaching an instance to its network: an address from the Network's status (allocated once,
//! kept across restarts of aosd and of the instance; in a unit from this node's slice), a named namespace, a veth pair on the
//! bridge with `eth0` inside, a default route. Idempotent; a half-made attachment is undone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{InstanceSpec, NetworkSpec};
use aos_ports::{Attachment, NetworkError, Networks, Shaping};
use aos_reconcile::Reason;
use aos_store::{Api, Backend};

use crate::hostports::{self, PortRange};
use crate::ipam::{self, Cidr};
use crate::netlink::{self, Links};
use crate::slices;
use crate::{Names, NetError};

pub struct Attacher {
    api: Api<NetworkSpec>,
    instances: Api<InstanceSpec>,
    names: Names,
    links: Links,
    host_ports: PortRange,
    /// Held while an instance's host ports are checked and its address taken.
    claims: tokio::sync::Mutex<()>,
    /// In a unit: this node's object name (its key in a Network's `status.slices`).
    node: Option<String>,
}

impl Attacher {
    pub fn new(
        backend: Arc<dyn Backend>,
        names: Names,
        links: Links,
        host_ports: PortRange,
    ) -> Attacher {
        Attacher {
            api: Api::new(backend.clone()),
            instances: Api::new(backend),
            names,
            links,
            host_ports,
            claims: tokio::sync::Mutex::new(()),
            node: None,
        }
    }

    /// In a unit: instances take addresses from this node's slice of each network.
    pub fn in_unit(mut self, node: &str) -> Self {
        self.node = Some(node.to_string());
        self
    }

    /// The instance's host ports are its own to publish (see [`crate::hostports`]).
    async fn check_host_ports(&self, instance: &str) -> Result<(), NetError> {
        let Some(me) = self.instances.get_opt(instance).await? else {
            return Ok(());
        };
        if me
            .spec
            .network
            .as_ref()
            .is_none_or(|n| n.host_ports.is_empty())
        {
            return Ok(());
        }
        let (all, _) = self.instances.list(&Default::default()).await?;
        hostports::check(&me, &all, self.host_ports, &hostports::listening)
            .map_err(NetError::HostPort)
    }

    async fn attach_inner(
        &self,
        instance: &str,
        network: &str,
        shaping: Shaping,
    ) -> Result<Attachment, NetError> {
        let net = self
            .api
            .get_opt(network)
            .await?
            .ok_or_else(|| NetError::NotReady(format!("{network} (no such Network)")))?;
        // This node's own bridge and part of the subnet: in a unit every node makes a bridge of
        // the network's on a slice of its own (the status' bridge names whichever node wrote
        // last).
        let subnet = net.status.subnet.as_deref().and_then(Cidr::parse);
        let part = match &self.node {
            None => subnet,
            Some(node) => subnet.and_then(|s| slices::held(&net.status.slices, &s, node)),
        };
        let (Some(subnet), Some(_), bridge) =
            (part, net.status.bridge.as_ref(), self.names.bridge(network))
        else {
            return Err(NetError::NotReady(network.to_string()));
        };
        if net.metadata.deletion_timestamp.is_some() {
            return Err(NetError::NotReady(format!("{network} (being deleted)")));
        }
        // The ports are checked and the address taken under one lock: an instance that holds a
        // port is one with an address.
        let _claim = self.claims.lock().await;
        self.check_host_ports(instance).await?;
        let mut ip: Option<Ipv4Addr> = None;
        self.api
            .update_status(network, |s| {
                // An address outside this node's part (the instance ran on another node of
                // the unit before) is replaced.
                ip = s
                    .allocations
                    .get(instance)
                    .and_then(|a| a.parse().ok())
                    .filter(|a| subnet.contains(*a));
                if ip.is_none() {
                    let taken: BTreeSet<Ipv4Addr> = s
                        .allocations
                        .values()
                        .filter_map(|a| a.parse().ok())
                        .collect();
                    ip = ipam::allocate(&subnet, &taken);
                    if let Some(a) = ip {
                        s.allocations.insert(instance.to_string(), a.to_string());
                    }
                }
            })
            .await?;
        let ip = ip.ok_or_else(|| NetError::NoAddress(network.to_string()))?;
        let bridge_index = self
            .links
            .index(&bridge)
            .await?
            .ok_or_else(|| NetError::NotReady(format!("{network} (no bridge yet)")))?;
        let netns = netlink::create_netns(&self.names.netns_dir, &self.ns_name(instance))?;
        let host = self.names.host_veth(instance);
        let mut fresh = self.links.index(&host).await?.is_none();
        if fresh {
            self.links.add_veth(&host, bridge_index, &netns).await?;
        }
        // Always, not only for a fresh pair: an attach cut short after the pair was made
        // (a crash) is finished here. Both ends are made together, in one request.
        let inside = |ns: PathBuf| async move {
            let gw = subnet.gateway();
            tokio::task::spawn_blocking(move || netlink::configure_inside(&ns, ip, subnet.len, gw))
                .await?
        };
        let mut made = inside(netns.clone()).await;
        if !fresh && matches!(made, Err(NetError::LinkMissing(_))) {
            // A host end left from a namespace that is gone, its peer not in this one.
            tracing::info!(link = %host, "replacing a veth whose peer is not in the instance's namespace");
            self.links.delete(&host).await?;
            self.links.add_veth(&host, bridge_index, &netns).await?;
            fresh = true;
            made = inside(netns.clone()).await;
        }
        if let Err(e) = made {
            if fresh {
                let _ = self.links.delete(&host).await;
            }
            return Err(e);
        }
        // A fresh veth has no bucket to clear: run tc only for limits or an older veth.
        if shaping != Shaping::default() || !fresh {
            let host_veth = host.clone();
            tokio::task::spawn_blocking(move || {
                crate::shaping::apply(&host_veth, &netns, shaping.upload, shaping.download)
            })
            .await??;
        }
        Ok(Attachment {
            ip: ip.to_string(),
            gateway: subnet.gateway().to_string(),
            dns: net.spec.dns_servers.clone(),
        })
    }

    fn ns_name(&self, instance: &str) -> String {
        self.names
            .netns(instance)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    async fn detach_inner(&self, instance: &str, network: &str) -> Result<(), NetError> {
        // The namespace goes first: the kernel then removes its eth0 and the host end with it,
        // many namespaces in one pass (deleting each veth here serializes on the kernel's lock,
        // ~30 ms each). One the namespace outlives (still held) is deleted here after a while.
        let host = self.names.host_veth(instance);
        netlink::delete_netns(&self.names.netns(instance))?;
        if !self
            .links
            .gone_within(&host, Duration::from_secs(2))
            .await?
        {
            self.links.delete(&host).await?;
        }
        if self.api.get_opt(network).await?.is_some() {
            self.api
                .update_status(network, |s| {
                    s.allocations.remove(instance);
                })
                .await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Networks for Attacher {
    fn netns_path(&self, instance: &str) -> PathBuf {
        self.names.netns(instance)
    }

    async fn attach(
        &self,
        instance: &str,
        network_id: &str,
        shaping: Shaping,
    ) -> Result<Attachment, NetworkError> {
        self.attach_inner(instance, network_id, shaping)
            .await
            .map_err(port_error)
    }

    fn counters(&self, instance: &str) -> Option<(u64, u64)> {
        // The host end of the veth: what it sends the instance receives, and the reverse.
        let dir = std::path::Path::new("/sys/class/net")
            .join(self.names.host_veth(instance))
            .join("statistics");
        let read = |f: &str| -> Option<u64> {
            std::fs::read_to_string(dir.join(f))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Some((read("tx_bytes")?, read("rx_bytes")?))
    }

    async fn detach(&self, instance: &str, network_id: &str) -> Result<(), NetworkError> {
        self.detach_inner(instance, network_id)
            .await
            .map_err(port_error)
    }
}

fn port_error(e: NetError) -> NetworkError {
    NetworkError {
        reason: e.reason(),
        message: e.to_string(),
    }
}
