//! What the image controllers' tests share: a node's image environment on fake sources, and
//! the Item they apply.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{ItemSource, ItemSpec, Object};
use aos_image::layerstore::LayerStore;
use aos_image::source::fake::FakeSources;
use aos_image::space::SpaceAllocator;
use aos_image_controllers::ImageEnv;
use aos_store::{Api, Backend};

/// The reference the fake registry serves.
pub const REF: &str = "registry.test/svc:v1";

/// A node's environment with its layer store under `root` (`node`: its name in a unit).
pub fn env(root: &Path, sources: Arc<FakeSources>, node: Option<&str>) -> Arc<ImageEnv> {
    env_on(root, sources, node, std::env::consts::ARCH)
}

/// As [`env`], on a node of CPU architecture `arch` (as the kernel names it).
pub fn env_on(
    root: &Path,
    sources: Arc<FakeSources>,
    node: Option<&str>,
    arch: &str,
) -> Arc<ImageEnv> {
    Arc::new(ImageEnv {
        store: LayerStore::open(root).unwrap(),
        sources,
        retry: Default::default(),
        convert: Default::default(),
        space: SpaceAllocator::new(root, 0),
        os: "linux".into(),
        arch: arch.into(),
        removed_ttl: Duration::from_secs(3600),
        versions_per_item: 2,
        integrity_interval: Duration::from_secs(3600),
        archive_dirs: Vec::new(),
        node: node.map(str::to_string),
    })
}

/// A reconciler's context on `backend`.
pub fn ctx<K: aos_api::Spec>(backend: &Arc<dyn Backend>) -> aos_reconcile::Context<K> {
    aos_reconcile::Context {
        api: Api::new(backend.clone()),
        reader: Default::default(),
        backend: backend.clone(),
        events: Default::default(),
        metrics: Default::default(),
    }
}

/// Applies the Item `svc` 1.0.0 from [`REF`].
pub async fn apply_item(backend: &Arc<dyn Backend>) {
    let spec = ItemSpec {
        item_id: "svc".into(),
        version: "1.0.0".into(),
        source: ItemSource {
            registry: Some(REF.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<ItemSpec>::new(backend.clone())
        .apply(&Object::new("svc".to_string(), spec))
        .await
        .unwrap();
}
