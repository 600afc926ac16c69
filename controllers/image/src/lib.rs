//! The Item and Layer controllers: an Item resolves its image and owns one Layer per layer; a
//! Layer downloads, verifies and converts (or, for components, keeps) one blob, once, however
//! many Items want it. Removed items' layers stay cached for a TTL; space pressure evicts them
//! oldest first; a periodic pass re-checks layers at rest and removes files nothing refers to.

mod gc;
mod item;
mod layer;

use std::sync::Arc;
use std::time::Duration;

use aos_image::convert::ConvertOptions;
use aos_image::download::RetryPolicy;
use aos_image::layerstore::LayerStore;
use aos_image::source::SourceConfig;
use aos_image::space::SpaceAllocator;
use aos_image::ImageError;
use aos_reconcile::Reason;
use aos_store::StoreError;

pub use gc::{collect_orphan_files, GcReport};
pub use item::ItemReconciler;
pub use layer::LayerReconciler;

/// Annotation on a Layer that lost its last owner: `itemId:version` of the removed Item.
pub const REMOVED_ITEM: &str = "aos.edge/removed-item";
/// Annotation with the RFC 3339 time the Layer lost its last owner.
pub const REMOVED_AT: &str = "aos.edge/removed-at";

/// What both controllers share.
pub struct ImageEnv {
    pub store: LayerStore,
    pub sources: SourceConfig,
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
}

/// Why a reconcile of an Item or Layer failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
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
            PipelineError::LayerFailed { reason, .. } => reason,
        }
    }
}

/// The Layer resource name of a blob digest: `sha256-<hex>`.
pub fn layer_name(digest: &str) -> String {
    digest.replace(':', "-")
}
