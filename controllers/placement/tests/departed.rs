//! What nodes that left the unit (no Node object) kept in the store is forgotten by one pass,
//! and only theirs: their Layer copies (finalizer and all), their entries in Items' status,
//! their slices and finalizers on Networks, once they have been gone for the grace; a second pass finds
//! nothing.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_api::ConditionStatus::{False, True};
use aos_api::{
    ItemOnNode, ItemPhase, ItemSource, ItemSpec, LayerSpec, NetworkSpec, NodeSpec, Object,
};
use aos_placement_controller::departed::{forget_departed, Departures, Forgotten};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use std::time::Duration;

const DIGEST: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

async fn layer(backend: &Arc<dyn Backend>, node: &str) -> String {
    let name = format!("{node}.{}", DIGEST.replace(':', "-"));
    let mut l = Object::new(
        name.clone(),
        LayerSpec {
            digest: DIGEST.into(),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            size: 1,
            node_name: Some(node.into()),
            ..Default::default()
        },
    );
    l.metadata.finalizers.push("aos.edge/layer".into());
    Api::<LayerSpec>::new(backend.clone())
        .apply(&l)
        .await
        .unwrap();
    name
}

#[tokio::test]
async fn what_departed_nodes_kept_is_forgotten_and_nothing_of_the_present_ones() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    Api::<NodeSpec>::new(backend.clone())
        .apply(&Object::new("here", NodeSpec::default()))
        .await
        .unwrap();
    let mine = layer(&backend, "here").await;
    let theirs = layer(&backend, "left").await;

    let items = Api::<ItemSpec>::new(backend.clone());
    let spec = ItemSpec {
        item_id: "svc".into(),
        version: "1".into(),
        source: ItemSource {
            http: Some("http://updates.test/svc".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    items.apply(&Object::new("svc", spec)).await.unwrap();
    items
        .update_status("svc", |s| {
            let entry = |phase| ItemOnNode {
                phase,
                ..Default::default()
            };
            s.set_node("here", Some(entry(ItemPhase::Ready)));
            s.set_node("left", Some(entry(ItemPhase::Downloading)));
        })
        .await
        .unwrap();
    assert_eq!(
        items.get("svc").await.unwrap().status.phase,
        ItemPhase::Downloading
    );

    let networks = Api::<NetworkSpec>::new(backend.clone());
    let mut net = Object::new("net", NetworkSpec::default());
    net.metadata.finalizers = vec![
        "aos.edge/network-here".into(),
        "aos.edge/network-left".into(),
    ];
    networks.apply(&net).await.unwrap();
    networks
        .update_status("net", |s| {
            s.subnet = Some("172.20.0.0/16".into());
            s.slices = [("here", "172.20.0.0/20"), ("left", "172.20.16.0/20")]
                .into_iter()
                .map(|(n, c)| (n.to_string(), c.to_string()))
                .collect();
            let now = chrono::Utc::now();
            s.set_condition_on(Some("here"), "RoutesReady", True, "Routed", "", now);
            s.set_condition_on(Some("left"), "RoutesReady", False, "NoRoute", "gone", now);
        })
        .await
        .unwrap();
    networks.delete("net").await.unwrap();

    // Absent for less than the grace: kept (a Node deleted by mistake is made again).
    let mut departures = Departures::default();
    let grace = Duration::from_secs(600);
    let f = forget_departed(&backend, &mut departures, grace).await;
    assert_eq!(f.unwrap(), Forgotten::default());
    tokio::time::pause();
    tokio::time::advance(grace).await;
    let f = forget_departed(&backend, &mut departures, grace)
        .await
        .unwrap();
    assert_eq!(
        f,
        Forgotten {
            layers: 1,
            item_entries: 1,
            network_finalizers: 1,
            network_nodes: 1,
        }
    );
    let layers = Api::<LayerSpec>::new(backend.clone());
    assert!(layers.get_opt(&theirs).await.unwrap().is_none());
    assert!(layers.get_opt(&mine).await.unwrap().is_some());
    let s = items.get("svc").await.unwrap().status;
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["here"]);
    assert_eq!(s.phase, ItemPhase::Ready, "summed up again without it");
    let net = networks.get("net").await.unwrap();
    assert_eq!(net.metadata.finalizers, ["aos.edge/network-here"]);
    assert_eq!(
        net.status.slices.keys().collect::<Vec<_>>(),
        ["here"],
        "its slice is free for another node"
    );
    let routes = net.status.common.condition("RoutesReady").unwrap();
    assert_eq!(routes.status, True, "its failing routes leave the sum");
    assert_eq!(net.status.nodes.keys().collect::<Vec<_>>(), ["here"]);

    let again = forget_departed(&backend, &mut departures, grace).await;
    assert_eq!(again.unwrap(), Forgotten::default());
}
