//! Items in a unit whose nodes differ in CPU architecture (`north` amd64, `south` arm64, on one
//! in-memory store and a fake source): each node fetches its own platform's manifest from a
//! multi-platform index, the status keeps both resolutions and the platforms offered, and no
//! node's pass undoes another's; a node whose platform the image lacks does not fail the Item.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use aos_api::{InstanceSpec, ItemPhase, ItemSpec, ItemStatus, LayerSpec, Object, Selector};
use aos_image::source::fake::{FakeSource, FakeSources};
use aos_image::source::SourceSpec;
use aos_image_controllers::ItemReconciler;
use aos_reconcile::Reconciler;
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use aos_testkit::image::{file, write_index, BuiltImage, ImageBuilder};

mod common;

use common::{ctx, REF};

struct Unit {
    _dir: tempfile::TempDir,
    backend: Arc<dyn Backend>,
    north: ItemReconciler,
    south: ItemReconciler,
    /// The images the index lists, by OCI architecture.
    images: Vec<BuiltImage>,
}

impl Unit {
    /// North is x86_64, south aarch64; the image offers `archs` (OCI names).
    fn new(archs: &[&str]) -> Unit {
        let dir = tempfile::tempdir().unwrap();
        let layout = dir.path().join("layout");
        let images: Vec<BuiltImage> = archs
            .iter()
            .map(|a| {
                ImageBuilder::new()
                    .arch(a)
                    .layer(&[file("usr/bin/svc", format!("built for {a}\n").as_bytes())])
                    .write_layout(&layout, "v1")
            })
            .collect();
        write_index(&layout, "v1", &images.iter().collect::<Vec<_>>());
        let source = Arc::new(FakeSource::from_layout("fake registry", &layout).unwrap());
        let sources = Arc::new(FakeSources::new());
        sources.add(&SourceSpec::Registry(REF.into()), source);
        let node = |name: &str, arch: &str| {
            let root = dir.path().join(name);
            ItemReconciler::new(common::env_on(&root, sources.clone(), Some(name), arch))
        };
        Unit {
            north: node("north", "x86_64"),
            south: node("south", "aarch64"),
            backend: Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap()),
            _dir: dir,
            images,
        }
    }

    async fn place(&self, instance: &str, node: &str) {
        let spec = InstanceSpec {
            item_id: "svc".into(),
            version: "1.0.0".into(),
            subject_id: "subject".into(),
            node_name: Some(node.into()),
            ..Default::default()
        };
        Api::<InstanceSpec>::new(self.backend.clone())
            .apply(&Object::new(instance.to_string(), spec))
            .await
            .unwrap();
    }

    async fn pass(&self, node: &ItemReconciler) {
        let obj = Api::<ItemSpec>::new(self.backend.clone())
            .get("svc")
            .await
            .unwrap();
        let _ = node.apply(Arc::new(obj), &ctx(&self.backend)).await;
    }

    async fn item(&self) -> Object<ItemSpec> {
        Api::<ItemSpec>::new(self.backend.clone())
            .get("svc")
            .await
            .unwrap()
    }

    /// The blob digests of `node`'s Layers.
    async fn digests_of(&self, node: &str) -> Vec<String> {
        let (all, _) = Api::<LayerSpec>::new(self.backend.clone())
            .list(&Selector::everything())
            .await
            .unwrap();
        all.into_iter()
            .filter(|l| l.spec.node_name.as_deref() == Some(node))
            .map(|l| l.spec.digest)
            .collect()
    }

    fn blobs(&self, arch: &str) -> Vec<String> {
        let image = self.images.iter().find(|i| i.arch == arch).unwrap();
        image.layers.iter().map(|l| l.0.clone()).collect()
    }
}

fn layers_for(s: &ItemStatus, platform: &str) -> Vec<String> {
    s.resolution(platform).unwrap().layers
}

#[tokio::test]
async fn nodes_of_two_platforms_each_fetch_their_own_manifest_and_neither_undoes_the_other() {
    let unit = Unit::new(&["amd64", "arm64"]);
    common::apply_item(&unit.backend).await;
    unit.place("svc-0", "north").await;
    unit.place("svc-1", "south").await;
    for _ in 0..2 {
        unit.pass(&unit.north).await;
        unit.pass(&unit.south).await;
    }
    let item = unit.item().await;
    let s = &item.status;
    assert_eq!(s.offered, ["linux/amd64", "linux/arm64"]);
    assert_eq!(
        s.resolved_for.as_deref(),
        Some("linux/amd64"),
        "north went first"
    );
    assert_eq!(s.platforms.keys().collect::<Vec<_>>(), ["linux/arm64"]);
    let name = |d: &String| d.replace(':', "-");
    let amd: Vec<String> = unit.blobs("amd64").iter().map(name).collect();
    let arm: Vec<String> = unit.blobs("arm64").iter().map(name).collect();
    assert_ne!(amd, arm);
    assert_eq!(layers_for(s, "linux/amd64"), amd);
    assert_eq!(layers_for(s, "linux/arm64"), arm);
    assert_eq!(unit.digests_of("north").await, unit.blobs("amd64"));
    assert_eq!(unit.digests_of("south").await, unit.blobs("arm64"));
    assert_eq!(
        s.nodes.keys().collect::<Vec<_>>(),
        ["north", "south"],
        "both fetch"
    );

    // Further passes write nothing: no node resolves again over the other's resolution.
    let version = item.metadata.resource_version;
    unit.pass(&unit.south).await;
    unit.pass(&unit.north).await;
    unit.pass(&unit.south).await;
    assert_eq!(unit.item().await.metadata.resource_version, version);
}

#[tokio::test]
async fn a_node_whose_platform_the_image_lacks_resolves_it_for_placement_and_fails_only_its_own_entry(
) {
    let unit = Unit::new(&["arm64"]);
    common::apply_item(&unit.backend).await;
    // North (amd64) runs none of it: it resolves the index's first platform for placement.
    unit.pass(&unit.north).await;
    let s = unit.item().await.status;
    assert_ne!(s.phase, ItemPhase::Failed);
    assert_eq!(s.resolved_for.as_deref(), Some("linux/arm64"));
    assert!(s.offers("linux/arm64") && !s.offers("linux/amd64"));
    assert!(unit.digests_of("north").await.is_empty());

    unit.place("svc-1", "south").await;
    unit.pass(&unit.south).await;
    assert_eq!(unit.digests_of("south").await, unit.blobs("arm64"));

    // Pinned to north by hand: north's entry fails, south's stays.
    unit.place("svc-0", "north").await;
    unit.pass(&unit.north).await;
    let s = unit.item().await.status;
    let north = &s.nodes["north"];
    assert_eq!(north.phase, ItemPhase::Failed);
    assert!(north.message.contains("linux/amd64"), "{}", north.message);
    assert_eq!(north.reason, "NoMatchingPlatform");
    assert_eq!(s.phase_on(Some("south")), ItemPhase::Downloading);
}
