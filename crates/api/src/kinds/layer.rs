//! Layer: one image layer by digest, shared by every Item that uses it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{check_digest, check_not_empty};
use crate::{impl_status, CommonStatus, FieldError, Spec};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerSpec {
    /// Digest of the (compressed) blob.
    pub digest: String,
    /// Digest of the uncompressed tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<String>,
    pub media_type: String,
    pub size: u64,
    /// Where the blob may be fetched from (registry repositories or HTTP base URLs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
    /// In a unit, the node that keeps this copy of the layer (each node stores its own, named
    /// `<node>.sha256-<hex>`); empty on a node of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// The Layer resource name of the blob `generic` (`sha256-<hex>`, as an Item's
/// `status.layers` lists it) on `node`: the name itself on a node of its own, `<node>.<name>`
/// in a unit.
pub fn layer_object_name(generic: &str, node: Option<&str>) -> String {
    match node {
        Some(n) => format!("{n}.{generic}"),
        None => generic.to_string(),
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum LayerPhase {
    #[default]
    Pending,
    Downloading,
    Verifying,
    Unpacking,
    Ready,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LayerStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default)]
    pub phase: LayerPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unpacked_size: Option<u64>,
    /// Digest of the layer as stored (its squashfs image, or the blob of a component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_digest: Option<String>,
    /// When the stored layer was last re-hashed and found intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Milliseconds of each phase of its last install: `download`, `unpack`, `verify`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub phase_millis: std::collections::BTreeMap<String, u64>,
}
impl_status!(LayerStatus);

impl Spec for LayerSpec {
    const KIND: &'static str = "Layer";
    type Status = LayerStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_digest("spec.digest", &self.digest, errors);
        if let Some(d) = &self.diff_id {
            check_digest("spec.diffId", d, errors);
        }
        check_not_empty("spec.mediaType", &self.media_type, errors);
    }
}
