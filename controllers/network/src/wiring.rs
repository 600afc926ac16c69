//! The Network controller as a whole: Networks, and the Instances that join and leave them
//! (which change the addresses a network's resolver answers and the NAT table); in a unit, other
//! nodes' slices and addresses (which change the routes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aos_api::{InstanceSpec, NetworkSpec, NodeSpec, Object};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::Backend;

use crate::NetworkReconciler;

/// The controller, watching Instances as well as Networks.
pub fn controller(
    reconciler: NetworkReconciler,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<NetworkReconciler> {
    let unit = reconciler.unit.is_some();
    let c =
        Controller::new(reconciler, backend, config).watches::<InstanceSpec>(instance_changes());
    if !unit {
        return c;
    }
    // In a unit: another node's slice, or a node's address, changes this node's routes.
    let known = Arc::new(Mutex::new(HashMap::<String, String>::new()));
    let seen = known.clone();
    let addresses = Mutex::new(HashMap::<String, Option<String>>::new());
    c.watches::<NetworkSpec>(move |n: &Object<NetworkSpec>| {
        let key = serde_json::json!(n.status.slices).to_string();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.insert(n.name().to_string(), key.clone()) {
            Some(old) if old == key => Vec::new(),
            _ => vec![n.name().to_string()],
        }
    })
    .watches::<NodeSpec>(move |n: &Object<NodeSpec>| {
        let mut addresses = addresses.lock().unwrap_or_else(|e| e.into_inner());
        let old = addresses.insert(n.name().to_string(), n.status.address.clone());
        if old.as_ref() == Some(&n.status.address) {
            return Vec::new();
        }
        let known = known.lock().unwrap_or_else(|e| e.into_inner());
        known.keys().cloned().collect()
    })
}

/// Maps an Instance event to its network, only when what the network side uses changed (spec,
/// address, deletion): usage samples every few seconds would otherwise wake every network.
fn instance_changes() -> impl Fn(&Object<InstanceSpec>) -> Vec<String> + Send + Sync + 'static {
    let seen = Mutex::new(HashMap::<String, String>::new());
    move |i: &Object<InstanceSpec>| {
        let Some(n) = &i.spec.network else {
            return Vec::new();
        };
        let key =
            serde_json::json!([i.spec, i.status.ip, i.metadata.deletion_timestamp]).to_string();
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.get(i.name()) == Some(&key) {
            return Vec::new();
        }
        if i.metadata.deletion_timestamp.is_some() && i.status.ip.is_none() {
            // Gone from its network: forget it (its last event then wakes the network once more).
            seen.remove(i.name());
        } else {
            seen.insert(i.name().to_string(), key);
        }
        vec![n.network_id.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_api::InstanceNetwork;

    fn instance(ip: Option<&str>) -> Object<InstanceSpec> {
        let mut o = Object::new(
            "web".to_string(),
            InstanceSpec {
                network: Some(InstanceNetwork {
                    network_id: "net".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        o.status.ip = ip.map(str::to_string);
        o
    }

    #[test]
    fn an_instance_wakes_its_network_only_when_what_the_network_uses_changed() {
        let map = instance_changes();
        assert_eq!(map(&instance(None)), ["net"]);
        assert!(
            map(&instance(None)).is_empty(),
            "a usage sample wakes nothing"
        );
        assert_eq!(map(&instance(Some("10.0.0.2"))), ["net"]);
        let mut plain = instance(None);
        plain.spec.network = None;
        assert!(map(&plain).is_empty(), "no network, nothing to wake");
    }
}
