//! The Item and Layer controllers: an Item resolves its image and owns one Layer per layer; a
//! Layer downloads, verifies and converts (or, for components, keeps) one blob, once, however
//! many Items want it. Removed items' layers stay cached for a TTL; space pressure evicts them
//! oldest first; a periodic pass re-checks layers at rest and removes files nothing refers to.

mod gc;
mod item;
mod layer;
mod owners;
mod resolved;
mod unit;
mod wiring;

use std::sync::Arc;
use std::time::Duration;

use aos_image::convert::ConvertOptions;
use aos_image::download::RetryPolicy;
use aos_image::layerstore::LayerStore;
use aos_image::source::Sources;
use aos_image::space::SpaceAllocator;
use aos_image::ImageError;
use aos_reconcile::Reason;
use aos_store::StoreError;

pub use gc::{collect_orphan_files, GcReport};
pub use item::ItemReconciler;
pub use layer::LayerReconciler;
pub use wiring::{item_controller, layer_controller};

/// Annotation on a Layer that lost its last owner: `itemId:version` of the removed Item.
pub const REMOVED_ITEM: &str = "aos.edge/removed-item";
/// Annotation with the RFC 3339 time the Layer lost its last owner.
pub const REMOVED_AT: &str = "aos.edge/removed-at";

/// What both controllers share.
pub struct ImageEnv {
    pub store: LayerStore,
    /// Where images come from (the real sources, or fakes in tests).
    pub sources: Arc<dyn Sources>,
    pub retry: RetryPolicy,
    pub convert: ConvertOptions,
    pub space: Arc<SpaceAllocator>,
    /// The node's platform, for choosing from indexes.
    pub os: String,
    pub arch: String,
    /// How long a removed item's layers stay cached.
    pub removed_ttl: Duration,
    /// Most versions of one item id kept on disk (live and cached).
    pub versions_per_item: usize,
    /// How often a Ready layer is re-hashed at rest.
    pub integrity_interval: Duration,
    /// Where Items written by others than root may name local archives.
    pub archive_dirs: Vec<std::path::PathBuf>,
    /// In a unit, this node's Node name: each node keeps its own Layers (named
    /// `<node>.sha256-<hex>`) and fetches an Item only when an instance of it is placed there.
    /// `None`: a node of its own, which fetches every Item.
    pub node: Option<String>,
}

impl ImageEnv {
    /// This node's Layer resource name of a layer an Item lists (`sha256-<hex>`).
    pub fn layer_object(&self, generic: &str) -> String {
        aos_api::layer_object_name(generic, self.node.as_deref())
    }

    /// This node's platform, `os/arch` with OCI names.
    pub fn platform(&self) -> String {
        aos_api::platform_key(&self.os, &self.arch)
    }

    /// Whether a Layer is this node's copy.
    pub fn keeps(&self, l: &aos_api::LayerSpec) -> bool {
        kept_by(l, self.node.as_deref())
    }
}

/// Whether `l` is the copy of node `node` (in a unit; `None`: a node of its own, whose Layers
/// name no node). The one rule every per-node pass of Layers filters by.
pub fn kept_by(l: &aos_api::LayerSpec, node: Option<&str>) -> bool {
    l.node_name.as_deref() == node
}

/// Why a reconcile of an Item or Layer failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("the item config is invalid: {0}")]
    InvalidConfig(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("layer {layer} failed: {message}")]
    LayerFailed {
        layer: String,
        reason: &'static str,
        message: String,
    },
}

impl Reason for PipelineError {
    fn reason(&self) -> &'static str {
        match self {
            PipelineError::Image(e) => e.reason(),
            PipelineError::Store(_) => "StoreError",
            PipelineError::InvalidConfig(_) => "InvalidConfig",
            PipelineError::NotAllowed(_) => "NotAllowed",
            PipelineError::LayerFailed { reason, .. } => reason,
        }
    }
}

/// The retention rule of `images.versions_per_item`: the cached (removed) versions of one item
/// id to drop so that live and cached versions together stay within `limit`. Live versions are
/// never dropped; cached ones go oldest removal first. `cached` holds (removed-at, version)
/// pairs, in any order and with repeats (one per layer).
pub fn versions_to_drop(
    live: &std::collections::BTreeSet<String>,
    cached: &[(String, String)],
    limit: usize,
) -> Vec<String> {
    let mut cached: Vec<(String, String)> = cached
        .iter()
        .filter(|(_, v)| !live.contains(v))
        .cloned()
        .collect();
    // Newest removal of each version decides its age.
    cached.sort_by(|a, b| b.cmp(a));
    let mut seen = std::collections::BTreeSet::new();
    cached.retain(|(_, v)| seen.insert(v.clone()));
    cached.reverse();
    let excess = (live.len() + cached.len()).saturating_sub(limit);
    cached.into_iter().take(excess).map(|(_, v)| v).collect()
}

/// Applies [`versions_to_drop`] to one item id: deletes the cached Layers of its versions
/// beyond the limit. Both controllers call it: the Item controller when a version arrives, the
/// Layer controller for every cached layer (so that deleting Items trims too, and every resync
/// re-checks).
pub async fn trim_versions(
    backend: &Arc<dyn aos_store::Backend>,
    node: Option<&str>,
    item_id: &str,
    limit: usize,
) -> Result<(), StoreError> {
    use aos_api::{ItemSpec, LayerSpec, Selector};
    let (items, _) = aos_store::Api::<ItemSpec>::new(backend.clone())
        .list(&Selector::everything())
        .await?;
    let live: std::collections::BTreeSet<String> = items
        .iter()
        .filter(|i| i.spec.item_id == item_id && i.metadata.deletion_timestamp.is_none())
        .map(|i| i.spec.version.clone())
        .collect();
    let layers = aos_store::Api::<LayerSpec>::new(backend.clone());
    let (all, _) = layers.list(&Selector::everything()).await?;
    let prefix = format!("{item_id}:");
    // (removed-at, version, layer) of every cached layer of this item id (on this node).
    let cached: Vec<(String, String, String)> = all
        .iter()
        .filter(|l| {
            l.metadata.owner_references.is_empty()
                && l.metadata.deletion_timestamp.is_none()
                && kept_by(&l.spec, node)
        })
        .filter_map(|l| {
            let a = &l.metadata.annotations;
            let v = a.get(REMOVED_ITEM)?.strip_prefix(&prefix)?.to_string();
            let at = a.get(REMOVED_AT).cloned().unwrap_or_default();
            Some((at, v, l.name().to_string()))
        })
        .collect();
    let pairs: Vec<(String, String)> = cached
        .iter()
        .map(|(a, v, _)| (a.clone(), v.clone()))
        .collect();
    for version in versions_to_drop(&live, &pairs, limit) {
        for (_, _, layer) in cached.iter().filter(|(_, v, _)| *v == version) {
            tracing::info!(
                layer,
                item_id,
                version,
                "dropping a cached version beyond the limit"
            );
            match layers.delete(layer).await {
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// The Layer resource name of a blob digest: `sha256-<hex>`.
pub fn layer_name(digest: &str) -> String {
    digest.replace(':', "-")
}

#[cfg(test)]
mod tests {
    use super::versions_to_drop;

    #[test]
    fn retention_drops_the_oldest_removed_versions_beyond_the_limit_and_never_a_live_one() {
        let live = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        let cached = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        let three_removed = cached(&[("t2", "2"), ("t1", "1"), ("t3", "3"), ("t1", "1")]);
        assert_eq!(versions_to_drop(&live(&[]), &three_removed, 2), ["1"]);
        assert_eq!(
            versions_to_drop(&live(&["4"]), &three_removed, 2),
            ["1", "2"]
        );
        assert_eq!(
            versions_to_drop(&live(&["4", "5", "6"]), &three_removed, 2),
            ["1", "2", "3"],
            "live versions beyond the limit stay; every cached one goes"
        );
        assert!(versions_to_drop(&live(&["1"]), &cached(&[("t1", "1")]), 1).is_empty());
    }
}
