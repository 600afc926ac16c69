//! The Network controller: picks the subnet (kept in status, so it never moves), makes the
//! bridge and the NAT rules (in a unit: on this node's slice of the subnet, with routes to the
//! other nodes' slices), and on deletion waits for the last instance to leave before it
//! removes them.

use aos_api::condition::{self as c, reason as r};
use std::sync::Arc;
use std::time::Duration;

use aos_api::{ConditionStatus, InstanceSpec, ItemSpec, NetworkSpec, NodeSpec, Object};
use aos_reconcile::{Action, Context, Reconciler};
use aos_store::Api;

use crate::dns::{names_for, Dns};
use crate::ipam::{self, Cidr};
use crate::nat::{self, NatInstance, NatNetwork, Ports};
use crate::netlink::Links;
use crate::slices::{self, Unit};
use crate::{Names, NetError, FINALIZER};

pub struct NetworkReconciler {
    names: Names,
    links: Links,
    pool: Vec<Cidr>,
    dns: Arc<Dns>,
    /// The interface that carries networks with a VLAN id.
    uplink: Option<String>,
    /// One subnet choice at a time.
    choosing: tokio::sync::Mutex<()>,
    /// One NAT rewrite at a time; the last set written (unchanged sets are not rewritten).
    nat: tokio::sync::Mutex<Option<Vec<NatNetwork>>>,
    /// The finalizer this node holds on a Network until its bridge is gone.
    finalizer: &'static str,
    /// In a unit: this node's name and slice size (see [`crate::slices`]).
    pub(crate) unit: Option<Unit>,
}

impl NetworkReconciler {
    pub fn new(
        names: Names,
        links: Links,
        pool: Vec<Cidr>,
        dns: Arc<Dns>,
        uplink: Option<String>,
    ) -> Self {
        NetworkReconciler {
            names,
            links,
            pool,
            dns,
            uplink,
            choosing: tokio::sync::Mutex::new(()),
            nat: tokio::sync::Mutex::new(None),
            finalizer: FINALIZER,
            unit: None,
        }
    }

    /// In a unit every node makes each network's bridge on a slice of its own: each holds a
    /// finalizer of its own (`aos.edge/network-<node>`), so that a deleted Network goes only
    /// once every node has removed its part (a node away keeps it Terminating until it is
    /// back).
    pub fn in_unit(mut self, unit: Unit) -> Self {
        // Once per process: the runtime takes a `&'static str`.
        self.finalizer = Box::leak(format!("{FINALIZER}-{}", unit.node).into_boxed_str());
        self.unit = Some(unit);
        self
    }

    /// This node's part of a network: its slice in a unit, else the whole subnet.
    fn part(&self, n: &Object<NetworkSpec>) -> Option<Cidr> {
        let subnet = Cidr::parse(n.status.subnet.as_deref()?)?;
        match &self.unit {
            None => Some(subnet),
            Some(u) => slices::held(&n.status.slices, &subnet, &u.node),
        }
    }

    /// In a unit: routes to the other nodes' slices (none in `cleanup`); the condition to
    /// write, or `None` on a node alone.
    async fn route_others(
        &self,
        backend: &Arc<dyn aos_store::Backend>,
        net: &Object<NetworkSpec>,
        subnet: &Cidr,
        removing: bool,
    ) -> Result<Option<(ConditionStatus, &'static str, String)>, NetError> {
        let Some(u) = &self.unit else {
            return Ok(None);
        };
        if removing {
            self.links.sync_routes(subnet, &[]).await?;
            return Ok(None);
        }
        let (nodes, _) = Api::<NodeSpec>::new(backend.clone())
            .list(&Default::default())
            .await?;
        let addresses = nodes
            .iter()
            .filter_map(|n| {
                Some((
                    n.name().to_string(),
                    n.status.address.as_deref()?.parse().ok()?,
                ))
            })
            .collect();
        let local = self.links.local_addresses().await?;
        let (wanted, unknown) = slices::routes(&net.status.slices, &u.node, &addresses, &local);
        let mut failed = self.links.sync_routes(subnet, &wanted).await?;
        failed.extend(
            unknown
                .iter()
                .map(|n| format!("node {n} reports no address")),
        );
        if failed.is_empty() {
            return Ok(Some((ConditionStatus::True, r::ROUTED, String::new())));
        }
        tracing::warn!(network = net.name(), node = u.node, failed = ?failed, "some parts of the network are not routed");
        let msg = format!("from {}: {}", u.node, failed.join("; "));
        Ok(Some((ConditionStatus::False, r::ROUTE_FAILED, msg)))
    }

    /// Rewrites the table from every Network with a subnet (except `leaving`) and the
    /// instances attached to them.
    async fn sync_nat(
        &self,
        backend: &Arc<dyn aos_store::Backend>,
        instances: &[Object<InstanceSpec>],
        leaving: Option<&str>,
    ) -> Result<(), NetError> {
        let mut last = self.nat.lock().await;
        let api = Api::<NetworkSpec>::new(backend.clone());
        let (all, _) = api.list(&Default::default()).await?;
        let all: Vec<_> = all.iter().filter(|n| Some(n.name()) != leaving).collect();
        // Every attached instance's address, for resolving allowed connections.
        let addr = |name: &str| -> Option<std::net::Ipv4Addr> {
            all.iter()
                .find_map(|n| n.status.allocations.get(name))
                .and_then(|a| a.parse().ok())
        };
        let nets: Vec<NatNetwork> = all
            .iter()
            .filter_map(|n| {
                let attached = instances
                    .iter()
                    .filter_map(|i| {
                        let ip = n.status.allocations.get(i.name())?.parse().ok()?;
                        Some(nat_instance(i, ip, instances, &addr))
                    })
                    .collect();
                Some(NatNetwork {
                    subnet: Cidr::parse(n.status.subnet.as_deref()?)?,
                    gateway: self.part(n)?.gateway(),
                    spans_nodes: self.unit.is_some(),
                    bridge: self.names.bridge(n.name()),
                    allow_outside: n.spec.allow_outside,
                    instances: attached,
                })
            })
            .collect();
        if last.as_ref() == Some(&nets) {
            return Ok(());
        }
        let table = self.names.table();
        let written = nets.clone();
        tokio::task::spawn_blocking(move || nat::sync(&table, &nets)).await??;
        *last = Some(written);
        Ok(())
    }
}

impl Reconciler for NetworkReconciler {
    type Kind = NetworkSpec;
    type Error = NetError;

    fn finalizer(&self) -> Option<&'static str> {
        Some(self.finalizer)
    }

    async fn apply(
        &self,
        obj: Arc<Object<NetworkSpec>>,
        ctx: &Context<NetworkSpec>,
    ) -> Result<Action, NetError> {
        let api = &ctx.api;
        let name = obj.name();
        let subnet = match (&obj.status.subnet, &obj.spec.subnet) {
            (Some(s), _) => {
                Cidr::parse(s).ok_or_else(|| NetError::Config(format!("bad subnet {s}")))?
            }
            (None, asked) => {
                let _one = self.choosing.lock().await;
                let (all, _) = api.list(&Default::default()).await?;
                let used: Vec<(String, Cidr)> = all
                    .iter()
                    .filter(|n| n.name() != name)
                    .filter_map(|n| {
                        let c =
                            Cidr::parse(n.status.subnet.as_deref().or(n.spec.subnet.as_deref())?)?;
                        Some((n.name().to_string(), c))
                    })
                    .collect();
                let routes = self.links.host_routes().await?;
                let chosen = match asked {
                    // An explicit subnet passes the checks a chosen one does.
                    Some(s) => {
                        let c = Cidr::parse(s)
                            .ok_or_else(|| NetError::Config(format!("bad subnet {s}")))?;
                        if let Some((other, o)) = used.iter().find(|(_, u)| u.overlaps(&c)) {
                            return Err(NetError::SubnetConflict(format!(
                                "{c} overlaps {o} of network {other}"
                            )));
                        }
                        if let Some(r) =
                            routes.iter().filter(|r| r.len > 0).find(|r| r.overlaps(&c))
                        {
                            return Err(NetError::SubnetConflict(format!(
                                "{c} overlaps the host's route to {r}"
                            )));
                        }
                        c
                    }
                    None => {
                        let taken: Vec<Cidr> = used.iter().map(|(_, c)| *c).collect();
                        ipam::choose_subnet(&self.pool, &taken, &routes)
                            .ok_or(NetError::NoSubnet)?
                    }
                };
                api.update_status(name, |s| s.subnet = Some(chosen.to_string()))
                    .await?;
                chosen
            }
        };
        let bridge = self.names.bridge(name);
        // The subnet is kept at once (two new networks must not pick the same one), and in a
        // unit this node's slice of it; the bridge and gateway, which instances wait for, once
        // everything is up.
        let mut part = Ok(subnet);
        api.update_status(name, |s| {
            s.subnet = Some(subnet.to_string());
            if let Some(u) = &self.unit {
                part = slices::claim(&mut s.slices, &subnet, u);
            }
        })
        .await?;
        let part = part?;
        let bridge_index = self.links.ensure_bridge(&bridge, &part).await?;
        let vlan = match (obj.spec.vlan_id, &self.uplink) {
            (None, _) => None,
            (Some(_), None) => Some(Err((
                "NoUplink",
                "no uplink is configured (network.uplink)".to_string(),
            ))),
            (Some(id), Some(up)) => Some(
                self.links
                    .ensure_vlan(&self.names.vlan(name), up, id, bridge_index)
                    .await
                    .map_err(|e| ("VlanFailed", e.to_string())),
            ),
        };
        let (instances, _) = Api::<InstanceSpec>::new(ctx.backend.clone())
            .list(&Default::default())
            .await?;
        self.sync_nat(&ctx.backend, &instances, None).await?;
        let latest = api.get(name).await?;
        let routes = self
            .route_others(&ctx.backend, &latest, &subnet, false)
            .await?;
        self.dns.set_zone(
            name,
            zone(&ctx.backend, name, &latest.status.allocations, &instances).await?,
            latest.spec.allow_outside,
        );
        let dns = self.dns.serve(name, part.gateway()).await;
        let now = chrono::Utc::now();
        let me = self.unit.as_ref().map(|u| u.node.as_str());
        api.update_status(name, |s| {
            // In a unit each node has a gateway of its own (its slice's first address), and
            // conditions of its own, summed up in the top-level ones.
            s.gateway = self.unit.is_none().then(|| part.gateway().to_string());
            if let Some((status, reason, msg)) = &routes {
                s.set_condition_on(me, c::ROUTES_READY, *status, reason, msg, now);
            }
            s.bridge = Some(bridge.clone());
            s.set_condition_on(me, c::READY, ConditionStatus::True, r::BRIDGE_UP, "", now);
            match &vlan {
                None => {}
                Some(Ok(())) => {
                    s.set_condition_on(
                        me,
                        c::VLAN_READY,
                        ConditionStatus::True,
                        r::ATTACHED,
                        "",
                        now,
                    );
                }
                Some(Err((reason, e))) => {
                    s.set_condition_on(me, c::VLAN_READY, ConditionStatus::False, reason, e, now);
                }
            }
            match &dns {
                Ok(()) => {
                    s.set_condition_on(me, c::DNS_READY, ConditionStatus::True, r::SERVING, "", now)
                }
                Err(e) => s.set_condition_on(
                    me,
                    c::DNS_READY,
                    ConditionStatus::False,
                    r::LISTEN_FAILED,
                    &e.to_string(),
                    now,
                ),
            };
        })
        .await?;
        // The resolver is retried (with the runtime's backoff) until it listens.
        dns?;
        tracing::debug!(network = name, %subnet, %part, bridge, "network ready");
        Ok(Action::AwaitChange)
    }

    async fn cleanup(
        &self,
        obj: Arc<Object<NetworkSpec>>,
        ctx: &Context<NetworkSpec>,
    ) -> Result<Action, NetError> {
        let name = obj.name();
        let latest = ctx.api.get_opt(name).await?;
        if let Some(n) = latest.filter(|n| !n.status.allocations.is_empty()) {
            let msg = format!("{} instances still attached", n.status.allocations.len());
            let now = chrono::Utc::now();
            ctx.api
                .update_status(name, |s| {
                    s.common
                        .set_condition(c::READY, ConditionStatus::False, r::IN_USE, &msg, now);
                })
                .await?;
            return Ok(Action::Requeue(Duration::from_secs(1)));
        }
        self.dns.stop(name);
        if let Some(subnet) = obj.status.subnet.as_deref().and_then(Cidr::parse) {
            self.route_others(&ctx.backend, &obj, &subnet, true).await?;
        }
        self.links.delete(&self.names.vlan(name)).await?;
        self.links.delete(&self.names.bridge(name)).await?;
        let (instances, _) = Api::<InstanceSpec>::new(ctx.backend.clone())
            .list(&Default::default())
            .await?;
        self.sync_nat(&ctx.backend, &instances, Some(name)).await?;
        tracing::info!(network = name, "network removed");
        Ok(Action::AwaitChange)
    }
}

/// The names of the network's attached instances.
async fn zone(
    backend: &Arc<dyn aos_store::Backend>,
    network: &str,
    allocations: &std::collections::BTreeMap<String, String>,
    instances: &[Object<InstanceSpec>],
) -> Result<std::collections::HashMap<String, std::net::Ipv4Addr>, NetError> {
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let mut out = std::collections::HashMap::new();
    for i in instances {
        let Some(ip) = allocations.get(i.name()).and_then(|a| a.parse().ok()) else {
            continue;
        };
        let s = &i.spec;
        let hostname = items
            .iter()
            .find(|it| it.spec.item_id == s.item_id && it.spec.version == s.version)
            .and_then(|it| it.status.config.as_ref()?.item.as_ref()?.hostname.clone());
        for n in names_for(
            &s.item_id,
            &s.subject_id,
            s.index,
            hostname.as_deref(),
            network,
        ) {
            out.insert(n, ip);
        }
    }
    Ok(out)
}

fn ports(spec: &str) -> Option<Ports> {
    let (first, last, proto) = aos_api::parse_port_spec(spec).ok()?;
    Some(Ports {
        first,
        last,
        proto: proto.to_string(),
    })
}

/// The firewall's view of one attached instance: its exposed ports, its allowed connections
/// resolved to the addresses of the item's attached instances, its published ports.
fn nat_instance(
    i: &Object<InstanceSpec>,
    ip: std::net::Ipv4Addr,
    all: &[Object<InstanceSpec>],
    addr: &dyn Fn(&str) -> Option<std::net::Ipv4Addr>,
) -> NatInstance {
    let Some(n) = &i.spec.network else {
        return NatInstance {
            ip,
            exposed: vec![],
            allowed: vec![],
            published: vec![],
        };
    };
    let exposed = n.exposed_ports.iter().filter_map(|p| ports(p)).collect();
    let mut allowed = Vec::new();
    for c in &n.allowed_connections {
        let Some((item, spec)) = c.split_once('/') else {
            continue;
        };
        let Some(p) = ports(spec) else { continue };
        for peer in all.iter().filter(|x| x.spec.item_id == item) {
            // Only to ports the peer exposes.
            let exposes = peer.spec.network.as_ref().is_some_and(|pn| {
                pn.exposed_ports
                    .iter()
                    .filter_map(|e| ports(e))
                    .any(|e| e.proto == p.proto && e.first <= p.first && p.last <= e.last)
            });
            if let (true, Some(a)) = (exposes, addr(peer.name())) {
                allowed.push((a, p.clone()));
            }
        }
    }
    let published = n
        .host_ports
        .iter()
        .filter_map(|h| aos_api::parse_host_port(h).ok())
        .map(|(h, p, proto)| (h, p, proto.to_string()))
        .collect();
    NatInstance {
        ip,
        exposed,
        allowed,
        published,
    }
}
