//! The blob of a component in a unit: each node takes its own copy (its Layer
//! `<node>.sha256-<hex>`) once the Item is Ready on that node, whatever the other nodes have.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_api::{ItemOnNode, ItemPhase, ItemRef, ItemSpec, LayerPhase, LayerSpec, Object};
use aos_slots::component::{blob, Blob};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};

const MEDIA: &str = "application/vnd.aos.image.component.full.v1+gzip";
const DIGEST: &str = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

async fn layer(backend: &Arc<dyn Backend>, node: &str, ready: bool) {
    let layers = Api::<LayerSpec>::new(backend.clone());
    let name = format!("{node}.{}", DIGEST.replace(':', "-"));
    let spec = LayerSpec {
        digest: DIGEST.into(),
        media_type: MEDIA.into(),
        size: 1,
        node_name: Some(node.into()),
        ..Default::default()
    };
    layers
        .apply(&Object::new(name.clone(), spec))
        .await
        .unwrap();
    if ready {
        layers
            .update_status(&name, |s| {
                s.phase = LayerPhase::Ready;
                s.path = Some(format!("/data/{node}/blob"));
            })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn in_a_unit_each_node_takes_its_own_copy_once_the_item_is_ready_there() {
    let backend: Arc<dyn Backend> = Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
    let items = Api::<ItemSpec>::new(backend.clone());
    let spec = ItemSpec {
        item_id: "os".into(),
        version: "2".into(),
        source: aos_api::ItemSource {
            http: Some("http://updates.test/os".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    items.apply(&Object::new("os-2", spec)).await.unwrap();
    items
        .update_status("os-2", |s| {
            s.layers = vec![DIGEST.replace(':', "-")];
            let entry = |phase| ItemOnNode {
                phase,
                ..Default::default()
            };
            s.nodes.insert("north".into(), entry(ItemPhase::Ready));
            s.nodes
                .insert("south".into(), entry(ItemPhase::Downloading));
            s.summarize_nodes();
        })
        .await
        .unwrap();
    layer(&backend, "north", true).await;
    layer(&backend, "south", false).await;
    let r = ItemRef {
        item_id: "os".into(),
        version: "2".into(),
    };
    assert_eq!(
        blob(&backend, &r, &[MEDIA], Some("north")).await.unwrap(),
        Blob::Ready {
            path: "/data/north/blob".into(),
            digest: DIGEST.into(),
            media_type: MEDIA.into(),
        }
    );
    assert!(matches!(
        blob(&backend, &r, &[MEDIA], Some("south")).await.unwrap(),
        Blob::Waiting(_)
    ));
    assert!(
        matches!(
            blob(&backend, &r, &[MEDIA], None).await.unwrap(),
            Blob::Waiting(_)
        ),
        "not Ready on every node: the top-level phase says Downloading"
    );
}
