//! Items and Layers in a unit, on a fake source and the in-memory store shared by two nodes
//! (`north` and `south`, each with its own layer store): only the node an instance is placed
//! on fetches the Item, into Layers of its own; the Item's status has one entry per such node
//! and sums them up; an instance that moves takes the fetching with it; a node's Layer whose
//! Item is gone is let go by that node alone.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_api::{InstanceSpec, ItemPhase, ItemSpec, LayerPhase, LayerSpec, Object, Selector};
use aos_image::source::fake::{FakeSource, FakeSources};
use aos_image::source::SourceSpec;
use aos_image_controllers::{ItemReconciler, LayerReconciler, REMOVED_AT};
use aos_reconcile::{Action, Reconciler};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use aos_testkit::image::{file, ImageBuilder};

mod common;

use common::{ctx, REF};

struct Node {
    items: ItemReconciler,
    layers: LayerReconciler,
}

struct Unit {
    _dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    north: Node,
    south: Node,
}

impl Unit {
    fn new() -> Unit {
        let dir = tempfile::tempdir().unwrap();
        let built = ImageBuilder::new()
            .layer(&[file("usr/bin/svc", b"#!/bin/sh\n")])
            .layer(&[file("etc/svc.conf", b"on\n")])
            .write_layout(&dir.path().join("layout"), "v1");
        let source = Arc::new(FakeSource::from_layout("fake registry", &built.layout).unwrap());
        let sources = Arc::new(FakeSources::new());
        sources.add(&SourceSpec::Registry(REF.into()), source);
        let node = |name: &str| {
            let env = common::env(&dir.path().join(name), sources.clone(), Some(name));
            Node {
                items: ItemReconciler::new(env.clone()),
                layers: LayerReconciler::new(env),
            }
        };
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        Unit {
            north: node("north"),
            south: node("south"),
            _dir: dir,
            backend,
        }
    }

    async fn item(&self) {
        common::apply_item(&self.backend).await;
    }

    /// Places (or moves) the one instance of the item on `node`.
    async fn place(&self, node: &str) {
        let api = Api::<InstanceSpec>::new(self.backend.clone());
        let mut i = match api.get_opt("svc-0").await.unwrap() {
            Some(i) => i,
            None => Object::new(
                "svc-0".to_string(),
                InstanceSpec {
                    item_id: "svc".into(),
                    version: "1.0.0".into(),
                    subject_id: "subject".into(),
                    ..Default::default()
                },
            ),
        };
        i.spec.node_name = Some(node.to_string());
        api.apply(&i).await.unwrap();
    }

    async fn pass(&self, node: &Node) -> Action {
        let obj = Arc::new(
            Api::<ItemSpec>::new(self.backend.clone())
                .get("svc")
                .await
                .unwrap(),
        );
        node.items.apply(obj, &ctx(&self.backend)).await.unwrap()
    }

    async fn status(&self) -> aos_api::ItemStatus {
        Api::<ItemSpec>::new(self.backend.clone())
            .get("svc")
            .await
            .unwrap()
            .status
    }

    /// The Layers of `node`, by name.
    async fn layers_of(&self, node: &str) -> Vec<Object<LayerSpec>> {
        let (all, _) = Api::<LayerSpec>::new(self.backend.clone())
            .list(&Selector::everything())
            .await
            .unwrap();
        all.into_iter()
            .filter(|l| l.spec.node_name.as_deref() == Some(node))
            .collect()
    }

    async fn mark_ready(&self, node: &str) {
        let api = Api::<LayerSpec>::new(self.backend.clone());
        for l in self.layers_of(node).await {
            api.update_status(l.name(), |s| s.phase = LayerPhase::Ready)
                .await
                .unwrap();
        }
    }
}

fn reason(s: &aos_api::ItemStatus) -> String {
    s.common.condition("Ready").unwrap().reason.clone()
}

#[tokio::test]
async fn in_a_unit_only_the_node_an_instance_is_placed_on_fetches_the_item_and_the_status_sums_the_nodes_up(
) {
    let unit = Unit::new();
    unit.item().await;
    unit.pass(&unit.north).await;
    unit.pass(&unit.south).await;
    let s = unit.status().await;
    assert_eq!(s.layers.len(), 2, "any node resolves: placement reads it");
    assert!(s.config.is_some());
    assert_eq!(
        (s.phase, reason(&s).as_str()),
        (ItemPhase::Pending, "NotPlaced")
    );
    assert!(unit.layers_of("north").await.is_empty());
    assert!(unit.layers_of("south").await.is_empty());

    unit.place("north").await;
    unit.pass(&unit.north).await;
    unit.pass(&unit.south).await;
    let north = unit.layers_of("north").await;
    assert_eq!(north.len(), 2);
    for l in &north {
        assert!(l.name().starts_with("north.sha256-"), "{}", l.name());
        assert_eq!(l.metadata.owner_references[0].name, "svc");
    }
    assert!(unit.layers_of("south").await.is_empty(), "south runs none");
    let s = unit.status().await;
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["north"]);
    assert_eq!(s.phase, ItemPhase::Downloading);
    assert_eq!(s.phase_on(Some("north")), ItemPhase::Downloading);

    unit.mark_ready("north").await;
    unit.pass(&unit.north).await;
    let s = unit.status().await;
    assert_eq!(
        (s.phase, reason(&s).as_str()),
        (ItemPhase::Ready, "LayersReady")
    );
    assert_eq!(s.phase_on(Some("north")), ItemPhase::Ready);
    assert_eq!(s.phase_on(Some("south")), ItemPhase::Pending);
    let p = s.progress.unwrap();
    assert_eq!(p.done_bytes, p.total_bytes);

    // The instance moves: south fetches, north lets its copy go (cached for the TTL).
    unit.place("south").await;
    unit.pass(&unit.north).await;
    unit.pass(&unit.south).await;
    let s = unit.status().await;
    assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["south"]);
    assert_eq!(s.phase, ItemPhase::Downloading);
    for l in unit.layers_of("north").await {
        assert!(l.metadata.owner_references.is_empty(), "{}", l.name());
        assert_eq!(
            l.metadata.annotations.get("aos.edge/removed-item").unwrap(),
            "svc:1.0.0"
        );
    }
    assert_eq!(unit.layers_of("south").await.len(), 2);
}

#[tokio::test]
async fn a_layer_whose_item_is_gone_is_let_go_by_its_own_node_only() {
    let unit = Unit::new();
    unit.item().await;
    unit.place("south").await;
    unit.pass(&unit.south).await;
    let layer = Arc::new(unit.layers_of("south").await.remove(0));
    assert!(unit.south.layers.owns(&layer));
    assert!(
        !unit.north.layers.owns(&layer),
        "north keeps its own copies only"
    );

    // Deleted while south's Item cleanup never ran (another node's did).
    Api::<ItemSpec>::new(unit.backend.clone())
        .delete("svc")
        .await
        .unwrap();
    unit.south
        .layers
        .apply(layer.clone(), &ctx(&unit.backend))
        .await
        .unwrap();
    let l = Api::<LayerSpec>::new(unit.backend.clone())
        .get(layer.name())
        .await
        .unwrap();
    assert!(l.metadata.owner_references.is_empty());
    assert!(l.metadata.annotations.contains_key(REMOVED_AT));
}

#[tokio::test]
async fn a_node_keeps_the_item_while_its_last_instance_is_being_removed_and_lets_go_after() {
    let unit = Unit::new();
    unit.item().await;
    unit.place("north").await;
    let instances = Api::<InstanceSpec>::new(unit.backend.clone());
    let mut i = instances.get("svc-0").await.unwrap();
    i.metadata.finalizers.push("test/stopping".into());
    instances.apply(&i).await.unwrap();
    unit.pass(&unit.north).await;
    instances.delete("svc-0").await.unwrap();
    assert!(
        matches!(unit.pass(&unit.north).await, Action::Requeue(_)),
        "looks again until the task is gone"
    );
    assert!(unit.status().await.nodes.contains_key("north"));
    assert!(unit
        .layers_of("north")
        .await
        .iter()
        .all(|l| !l.metadata.owner_references.is_empty()));

    instances
        .set_finalizers("svc-0", Vec::new(), None)
        .await
        .unwrap();
    assert!(instances.get_opt("svc-0").await.unwrap().is_none());
    unit.pass(&unit.north).await;
    let s = unit.status().await;
    assert!(s.nodes.is_empty());
    assert_eq!(s.phase, ItemPhase::Pending);
    assert!(unit
        .layers_of("north")
        .await
        .iter()
        .all(|l| l.metadata.owner_references.is_empty()));
}
