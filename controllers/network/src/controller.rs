//! The Network controller: picks the subnet (kept in status, so it never moves), makes the
//! bridge and the NAT rules, and on deletion waits for the last instance to leave before it
//! removes them.

use std::sync::Arc;
use std::time::Duration;

use aos_api::{ConditionStatus, InstanceSpec, ItemSpec, NetworkSpec, Object};
use aos_reconcile::{Action, Context, Reconciler};
use aos_store::Api;

use crate::dns::{names_for, Dns};
use crate::ipam::{self, Cidr};
use crate::nat::{self, NatNetwork};
use crate::netlink::Links;
use crate::{Names, NetError, FINALIZER};

pub struct NetworkReconciler {
    names: Names,
    links: Links,
    pool: Vec<Cidr>,
    dns: Arc<Dns>,
    /// One subnet choice at a time.
    choosing: tokio::sync::Mutex<()>,
    /// One NAT rewrite at a time; the last set written (unchanged sets are not rewritten).
    nat: tokio::sync::Mutex<Option<Vec<NatNetwork>>>,
}

impl NetworkReconciler {
    pub fn new(names: Names, links: Links, pool: Vec<Cidr>, dns: Arc<Dns>) -> Self {
        NetworkReconciler {
            names,
            links,
            pool,
            dns,
            choosing: tokio::sync::Mutex::new(()),
            nat: tokio::sync::Mutex::new(None),
        }
    }

    /// Rewrites the table from every Network with a subnet, except `leaving`.
    async fn sync_nat(
        &self,
        api: &Api<NetworkSpec>,
        leaving: Option<&str>,
    ) -> Result<(), NetError> {
        let mut last = self.nat.lock().await;
        let (all, _) = api.list(&Default::default()).await?;
        let nets: Vec<NatNetwork> = all
            .iter()
            .filter(|n| Some(n.name()) != leaving)
            .filter_map(|n| {
                Some(NatNetwork {
                    subnet: Cidr::parse(n.status.subnet.as_deref()?)?,
                    bridge: self.names.bridge(n.name()),
                    allow_outside: n.spec.allow_outside,
                })
            })
            .collect();
        if last.as_ref() == Some(&nets) {
            return Ok(());
        }
        let table = self.names.table();
        let written = nets.clone();
        tokio::task::spawn_blocking(move || nat::sync(&table, &nets))
            .await
            .map_err(|e| NetError::Firewall(e.to_string()))??;
        *last = Some(written);
        Ok(())
    }
}

impl Reconciler for NetworkReconciler {
    type Kind = NetworkSpec;
    type Error = NetError;

    fn finalizer(&self) -> Option<&'static str> {
        Some(FINALIZER)
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
            (None, Some(s)) => {
                Cidr::parse(s).ok_or_else(|| NetError::Config(format!("bad subnet {s}")))?
            }
            (None, None) => {
                let _one = self.choosing.lock().await;
                let (all, _) = api.list(&Default::default()).await?;
                let used: Vec<Cidr> = all
                    .iter()
                    .filter(|n| n.name() != name)
                    .filter_map(|n| {
                        Cidr::parse(n.status.subnet.as_deref().or(n.spec.subnet.as_deref())?)
                    })
                    .collect();
                let routes = self.links.host_routes().await?;
                let chosen =
                    ipam::choose_subnet(&self.pool, &used, &routes).ok_or(NetError::NoSubnet)?;
                api.update_status(name, |s| s.subnet = Some(chosen.to_string()))
                    .await?;
                chosen
            }
        };
        let bridge = self.names.bridge(name);
        // The subnet is kept at once (two new networks must not pick the same one); the
        // bridge and gateway, which instances wait for, once everything is up.
        api.update_status(name, |s| s.subnet = Some(subnet.to_string()))
            .await?;
        self.links.ensure_bridge(&bridge, &subnet).await?;
        self.sync_nat(api, None).await?;
        let latest = api.get(name).await?;
        self.dns.set_zone(
            name,
            zone(&ctx.backend, name, &latest.status.allocations).await?,
        );
        let dns = self.dns.serve(name, subnet.gateway()).await;
        let now = chrono_now();
        api.update_status(name, |s| {
            s.gateway = Some(subnet.gateway().to_string());
            s.bridge = Some(bridge.clone());
            s.common
                .set_condition("Ready", ConditionStatus::True, "BridgeUp", "", now);
            match &dns {
                Ok(()) => {
                    s.common
                        .set_condition("DnsReady", ConditionStatus::True, "Serving", "", now)
                }
                Err(e) => s.common.set_condition(
                    "DnsReady",
                    ConditionStatus::False,
                    "ListenFailed",
                    &e.to_string(),
                    now,
                ),
            };
        })
        .await?;
        tracing::debug!(network = name, %subnet, bridge, "network ready");
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
            let now = chrono_now();
            ctx.api
                .update_status(name, |s| {
                    s.common
                        .set_condition("Ready", ConditionStatus::False, "InUse", &msg, now);
                })
                .await?;
            return Ok(Action::Requeue(Duration::from_secs(1)));
        }
        self.dns.stop(name);
        self.links.delete(&self.names.bridge(name)).await?;
        self.sync_nat(&ctx.api, Some(name)).await?;
        tracing::info!(network = name, "network removed");
        Ok(Action::AwaitChange)
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// The names of the network's attached instances.
async fn zone(
    backend: &Arc<dyn aos_store::Backend>,
    network: &str,
    allocations: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::HashMap<String, std::net::Ipv4Addr>, NetError> {
    let (instances, _) = Api::<InstanceSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let mut out = std::collections::HashMap::new();
    for i in &instances {
        let Some(ip) = allocations.get(i.name()).and_then(|a| a.parse().ok()) else {
            continue;
        };
        let s = &i.spec;
        let hostname = items
            .iter()
            .find(|it| it.spec.item_id == s.item_id && it.spec.version == s.version)
            .and_then(|it| {
                it.status
                    .config
                    .pointer("/item/hostname")?
                    .as_str()
                    .map(str::to_string)
            });
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
