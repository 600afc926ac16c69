//! Collecting files nothing refers to: layer images, blobs (and partial downloads) and
//! documents whose Layer or Item is gone. Runs at start and periodically; an install in flight
//! always has its Layer resource, so its files are never taken.

use std::collections::HashSet;

use aos_api::{ItemSpec, LayerSpec, Selector};
use aos_image::layerstore::LayerStore;
use aos_store::{Api, Backend, StoreError};

/// What a pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub layers: Vec<String>,
    pub blobs: Vec<String>,
    pub documents: Vec<String>,
}

/// Removes every stored file no Layer of this node (`node`: in a unit, its Node name) or
/// Item refers to.
pub async fn collect_orphan_files(
    store: &LayerStore,
    backend: std::sync::Arc<dyn Backend>,
    node: Option<&str>,
) -> Result<GcReport, StoreError> {
    let (mut layers, _) = Api::<LayerSpec>::new(backend.clone())
        .list(&Selector::everything())
        .await?;
    layers.retain(|l| crate::kept_by(&l.spec, node));
    let (items, _) = Api::<ItemSpec>::new(backend)
        .list(&Selector::everything())
        .await?;
    let diff_ids: HashSet<String> = layers
        .iter()
        .filter_map(|l| l.spec.diff_id.clone())
        .collect();
    let digests: HashSet<String> = layers.iter().map(|l| l.spec.digest.clone()).collect();
    let docs: HashSet<String> = items.iter().flat_map(|i| i.status.digests()).collect();
    let mut report = GcReport::default();
    for d in store.layers_on_disk() {
        if !diff_ids.contains(&d) && store.remove_layer(&d).is_ok() {
            report.layers.push(d);
        }
    }
    for d in store.blobs_on_disk() {
        if !digests.contains(&d) && store.remove_blob(&d).is_ok() {
            report.blobs.push(d);
        }
    }
    for d in store.metas_on_disk() {
        if !docs.contains(&d) && store.remove_meta(&d).is_ok() {
            report.documents.push(d);
        }
    }
    if report != GcReport::default() {
        tracing::info!(
            layers = report.layers.len(),
            blobs = report.blobs.len(),
            documents = report.documents.len(),
            "removed orphan files"
        );
    }
    Ok(report)
}
