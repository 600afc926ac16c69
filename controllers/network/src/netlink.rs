//! The mechanics, over rtnetlink: bridges, veth pairs, addresses and routes on the host, named
//! network namespaces (bind-mounted under `/run/netns` as `ip netns add` does, made from a
//! thread of their own, never by forking the daemon) and the configuration inside them (from a
//! thread that enters the namespace and runs its own netlink connection).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVlan, RouteMessageBuilder,
};

use crate::ipam::Cidr;
use crate::NetError;

fn nl(what: String) -> impl FnOnce(rtnetlink::Error) -> NetError {
    move |e| NetError::Netlink {
        what,
        source: Box::new(e),
    }
}

/// A route that is already gone (removed by the kernel with its link, or by another pass).
fn gone(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(nix::errno::Errno::ESRCH as i32))
}

/// The protocol number of the routes aosd adds (to other nodes' parts of a network): how they
/// are told from the host's own routes.
pub const ROUTE_PROTOCOL: u8 = 0xa5;

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -(nix::errno::Errno::EEXIST as i32))
}

/// A netlink connection to the host's network namespace.
#[derive(Clone)]
pub struct Links {
    handle: Handle,
}

impl Links {
    /// Opens the connection; its driver runs on the current tokio runtime.
    pub fn new() -> Result<Links, NetError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| NetError::Io {
            what: "failed to open a netlink socket".into(),
            source: e,
        })?;
        tokio::spawn(conn);
        Ok(Links { handle })
    }

    pub async fn index(&self, name: &str) -> Result<Option<u32>, NetError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(l) => Ok(l.map(|l| l.header.index)),
            Err(rtnetlink::Error::NetlinkError(m))
                if m.raw_code() == -(nix::errno::Errno::ENODEV as i32) =>
            {
                Ok(None)
            }
            Err(e) => Err(nl(format!("failed to look up link {name}"))(e)),
        }
    }

    /// The index of a link that must be there; `what` names it and `why` says why it is not.
    async fn existing(&self, name: &str, what: String, why: &str) -> Result<u32, NetError> {
        self.index(name)
            .await?
            .ok_or_else(|| NetError::LinkMissing(format!("{what}: {why}")))
    }

    /// A bridge named `name`, up, with the gateway address of `subnet` as its only IPv4 address.
    pub async fn ensure_bridge(&self, name: &str, subnet: &Cidr) -> Result<u32, NetError> {
        let index = match self.index(name).await? {
            Some(i) => i,
            None => {
                self.handle
                    .link()
                    .add(LinkBridge::new(name).up().build())
                    .execute()
                    .await
                    .map_err(nl(format!("failed to create bridge {name}")))?;
                self.existing(name, format!("bridge {name}"), "vanished after creation")
                    .await?
            }
        };
        let r = self
            .handle
            .address()
            .add(index, IpAddr::V4(subnet.gateway()), subnet.len)
            .execute()
            .await;
        if let Err(e) = r {
            if !exists(&e) {
                return Err(nl(format!("failed to address bridge {name}"))(e));
            }
        }
        // Any other IPv4 address of ours is stale (the part changed: a node that joined a
        // unit takes a slice of the subnet it held whole): it would claim the rest on-link.
        let mut addrs = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        let mut stale = Vec::new();
        while let Some(m) = addrs
            .try_next()
            .await
            .map_err(nl(format!("failed to list the addresses of {name}")))?
        {
            let ours = m.attributes.iter().any(|a| {
                matches!(a, AddressAttribute::Address(IpAddr::V4(ip)) if *ip == subnet.gateway())
            }) && m.header.prefix_len == subnet.len;
            let v4 = m
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Address(IpAddr::V4(_))));
            if v4 && !ours {
                stale.push(m);
            }
        }
        for m in stale {
            tracing::info!(bridge = name, part = %subnet, "removing a stale address of the bridge");
            self.handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(nl(format!("failed to remove a stale address of {name}")))?;
        }
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("failed to bring up {name}")))?;
        Ok(index)
    }

    /// A VLAN link `name` with `id` on `uplink`, a port of the bridge, up.
    pub async fn ensure_vlan(
        &self,
        name: &str,
        uplink: &str,
        id: u16,
        bridge: u32,
    ) -> Result<(), NetError> {
        let base = self
            .existing(uplink, format!("uplink {uplink}"), "no such link")
            .await?;
        let index = match self.index(name).await? {
            Some(i) => i,
            None => {
                self.handle
                    .link()
                    .add(LinkVlan::new(name, base, id).build())
                    .execute()
                    .await
                    .map_err(nl(format!("failed to create VLAN {id} on {uplink}")))?;
                self.existing(name, format!("VLAN link {name}"), "vanished after creation")
                    .await?
            }
        };
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("failed to put {name} on its bridge")))
    }

    /// Deletes a link if it exists.
    pub async fn delete(&self, name: &str) -> Result<(), NetError> {
        if let Some(i) = self.index(name).await? {
            self.handle
                .link()
                .del(i)
                .execute()
                .await
                .map_err(nl(format!("failed to delete link {name}")))?;
        }
        Ok(())
    }

    /// Waits up to `limit` for the link `name` to go (the kernel removes the host end of a veth
    /// whose namespace died); whether it went.
    pub async fn gone_within(&self, name: &str, limit: Duration) -> Result<bool, NetError> {
        let until = tokio::time::Instant::now() + limit;
        while self.index(name).await?.is_some() {
            if tokio::time::Instant::now() >= until {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(true)
    }

    /// The destinations of the host's IPv4 routes (to keep pool subnets clear of them).
    pub async fn host_routes(&self) -> Result<Vec<Cidr>, NetError> {
        let req = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(req).execute();
        let mut out = Vec::new();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(nl("failed to list routes".into()))?
        {
            for a in &r.attributes {
                if let rtnetlink::packet_route::route::RouteAttribute::Destination(
                    rtnetlink::packet_route::route::RouteAddress::Inet(ip),
                ) = a
                {
                    out.push(Cidr::new(*ip, r.header.destination_prefix_length));
                }
            }
        }
        Ok(out)
    }

    /// The host's own IPv4 addresses.
    pub async fn local_addresses(&self) -> Result<Vec<Ipv4Addr>, NetError> {
        let mut addrs = self.handle.address().get().execute();
        let mut out = Vec::new();
        while let Some(m) = addrs
            .try_next()
            .await
            .map_err(nl("failed to list addresses".into()))?
        {
            for a in &m.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = a {
                    out.push(*ip);
                }
            }
        }
        Ok(out)
    }

    /// Makes the routes of ours (told from the host's by their protocol number) to parts of
    /// `within` exactly `wanted` (destination, gateway). Returns what could not be routed
    /// (a gateway no link reaches, say), one message each; listing errors are errors.
    pub async fn sync_routes(
        &self,
        within: &Cidr,
        wanted: &[(Cidr, Ipv4Addr)],
    ) -> Result<Vec<String>, NetError> {
        let req = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = self.handle.route().get(req).execute();
        let mut have = Vec::new();
        let mut stale = Vec::new();
        while let Some(r) = routes
            .try_next()
            .await
            .map_err(nl("failed to list routes".into()))?
        {
            if r.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let (mut dst, mut gw) = (None, None);
            for a in &r.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => {
                        dst = Some(Cidr::new(*ip, r.header.destination_prefix_length));
                    }
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gw = Some(*ip),
                    _ => {}
                }
            }
            let (Some(dst), Some(gw)) = (dst, gw) else {
                continue;
            };
            if !within.overlaps(&dst) || dst.len < within.len {
                continue;
            }
            if wanted.contains(&(dst, gw)) {
                have.push((dst, gw));
            } else {
                stale.push(r);
            }
        }
        for r in stale {
            match self.handle.route().del(r).execute().await {
                Err(e) if !gone(&e) => return Err(nl("failed to remove a route".into())(e)),
                _ => {}
            }
        }
        let mut failed = Vec::new();
        for (dst, gw) in wanted.iter().filter(|w| !have.contains(w)) {
            let msg = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dst.addr, dst.len)
                .gateway(*gw)
                .protocol(RouteProtocol::Other(ROUTE_PROTOCOL))
                .build();
            if let Err(e) = self.handle.route().add(msg).replace().execute().await {
                failed.push(format!("{dst} via {gw}: {e}"));
            }
        }
        Ok(failed)
    }

    /// A veth pair: `host` on the bridge, up; `peer` moved into the namespace at `netns`.
    /// Creates the veth pair in one request: `host` on `bridge` and up, its peer born inside
    /// the namespace at `netns` as `eth0` (no move between namespaces, no rename: each costs
    /// the kernel a round of notifications). The peer cannot be made up in the same request
    /// (the kernel answers ENOTCONN): [`configure_inside`] does it.
    pub async fn add_veth(&self, host: &str, bridge: u32, netns: &Path) -> Result<(), NetError> {
        let ns = std::fs::File::open(netns).map_err(|e| NetError::Io {
            what: format!("failed to open {}", netns.display()),
            source: e,
        })?;
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_string())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let pair = LinkVeth::new(host, "eth0")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .controller(bridge)
            .up()
            .build();
        self.handle
            .link()
            .add(pair)
            .execute()
            .await
            .map_err(nl(format!(
                "failed to create veth {host} with eth0 in {}",
                netns.display()
            )))
    }
}

/// Creates the named namespace `dir/name` (idempotent) and returns its path.
pub fn create_netns(dir: &Path, name: &str) -> Result<PathBuf, NetError> {
    use nix::mount::{mount, MsFlags};
    let path = dir.join(name);
    if is_netns(&path) {
        return Ok(path);
    }
    std::fs::create_dir_all(dir).map_err(|e| NetError::Io {
        what: format!("failed to create {}", dir.display()),
        source: e,
    })?;
    std::fs::write(&path, b"").map_err(|e| NetError::Io {
        what: format!("failed to create {}", path.display()),
        source: e,
    })?;
    let p = path.clone();
    let made = std::thread::spawn(move || -> Result<(), String> {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| format!("unshare: {e}"))?;
        let own = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
        mount(
            Some(own.as_str()),
            &p,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| format!("bind mount: {e}"))
    })
    .join()
    .map_err(|_| NetError::Netns("the namespace thread panicked".into()))?;
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(NetError::Netns(format!("{}: {e}", path.display())));
    }
    Ok(path)
}

/// Whether `path` is a mounted namespace.
pub fn is_netns(path: &Path) -> bool {
    aos_image::layerstore::is_mounted(path)
}

/// Unmounts and removes a named namespace (its links go with it).
pub fn delete_netns(path: &Path) -> Result<(), NetError> {
    if is_netns(path) {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
            NetError::Sys {
                what: format!("failed to unmount {}", path.display()),
                source,
            }
        })?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(NetError::Io {
            what: format!("failed to remove {}", path.display()),
            source: e,
        }),
    }
}

/// Inside the namespace at `netns`: `eth0` with `ip/len`, up; `lo` up; a default route
/// through `gateway`. Idempotent.
pub fn configure_inside(
    netns: &Path,
    ip: Ipv4Addr,
    len: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetError> {
    let ns = std::fs::File::open(netns).map_err(|e| NetError::Io {
        what: format!("failed to open {}", netns.display()),
        source: e,
    })?;
    std::thread::spawn(move || -> Result<(), NetError> {
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
            NetError::Sys {
                what: "setns".into(),
                source,
            }
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| NetError::Io {
                what: "failed to start a runtime in the namespace".into(),
                source: e,
            })?;
        rt.block_on(async move {
            let links = Links::new()?;
            let h = &links.handle;
            let p = links
                .existing("eth0", "eth0".into(), "not in the namespace")
                .await?;
            let r = h.address().add(p, IpAddr::V4(ip), len).execute().await;
            if let Err(e) = r {
                if !exists(&e) {
                    return Err(nl(format!("failed to add {ip}/{len}"))(e));
                }
            }
            h.link()
                .set(LinkUnspec::new_with_index(p).up().build())
                .execute()
                .await
                .map_err(nl("failed to bring up eth0".into()))?;
            if let Some(lo) = links.index("lo").await? {
                h.link()
                    .set(LinkUnspec::new_with_index(lo).up().build())
                    .execute()
                    .await
                    .map_err(nl("failed to bring up lo".into()))?;
            }
            let route = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gateway)
                .build();
            if let Err(e) = h.route().add(route).execute().await {
                if !exists(&e) {
                    return Err(nl(format!("failed to route through {gateway}"))(e));
                }
            }
            Ok(())
        })
    })
    .join()
    .map_err(|_| NetError::Netns("the namespace thread panicked".into()))?
}
