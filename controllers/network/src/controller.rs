//! The Network controller: picks the subnet (kept in status, so it never moves), makes the
//! bridge and the NAT rules, and on deletion waits for the last instance to leave before it
//! removes them.

use std::sync::Arc;
use std::time::Duration;

use aos_api::{ConditionStatus, NetworkSpec, Object};
use aos_reconcile::{Action, Context, Reconciler};
use aos_store::Api;

use crate::ipam::{self, Cidr};
use crate::nat::{self, NatNetwork};
use crate::netlink::Links;
use crate::{Names, NetError, FINALIZER};

pub struct NetworkReconciler {
    names: Names,
    links: Links,
    pool: Vec<Cidr>,
    /// One NAT rewrite at a time.
    nat: tokio::sync::Mutex<()>,
}

impl NetworkReconciler {
    pub fn new(names: Names, links: Links, pool: Vec<Cidr>) -> Self {
        NetworkReconciler {
            names,
            links,
            pool,
            nat: tokio::sync::Mutex::new(()),
        }
    }

    /// Rewrites the table from every Network with a subnet, except `leaving`.
    async fn sync_nat(
        &self,
        api: &Api<NetworkSpec>,
        leaving: Option<&str>,
    ) -> Result<(), NetError> {
        let _one = self.nat.lock().await;
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
        let table = self.names.table();
        tokio::task::spawn_blocking(move || nat::sync(&table, &nets))
            .await
            .map_err(|e| NetError::Firewall(e.to_string()))?
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
                let (all, _) = api.list(&Default::default()).await?;
                let used: Vec<Cidr> = all
                    .iter()
                    .filter(|n| n.name() != name)
                    .filter_map(|n| {
                        Cidr::parse(n.status.subnet.as_deref().or(n.spec.subnet.as_deref())?)
                    })
                    .collect();
                let routes = self.links.host_routes().await?;
                ipam::choose_subnet(&self.pool, &used, &routes).ok_or(NetError::NoSubnet)?
            }
        };
        let bridge = self.names.bridge(name);
        api.update_status(name, |s| {
            s.subnet = Some(subnet.to_string());
            s.gateway = Some(subnet.gateway().to_string());
            s.bridge = Some(bridge.clone());
        })
        .await?;
        self.links.ensure_bridge(&bridge, &subnet).await?;
        self.sync_nat(api, None).await?;
        let now = chrono_now();
        api.update_status(name, |s| {
            s.common
                .set_condition("Ready", ConditionStatus::True, "BridgeUp", "", now);
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
        self.links.delete(&self.names.bridge(name)).await?;
        self.sync_nat(&ctx.api, Some(name)).await?;
        tracing::info!(network = name, "network removed");
        Ok(Action::AwaitChange)
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
