//! Item: one version of a deployable item (a service image or a boot/rootfs component) and
//! where to fetch it from.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{check_digest, check_not_empty};
use crate::{impl_status, CommonStatus, FieldError, Spec};

/// Service items run as containers; components are boot or rootfs images.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ItemType {
    #[default]
    Service,
    Component,
}

/// Where the image comes from: exactly one of the three.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemSource {
    /// An OCI reference: `host[:port]/repo:tag` or `…@sha256:…`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    /// Base URL of an OCI image layout served over HTTP(S).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    /// A local OCI archive or layout directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemSpec {
    pub item_id: String,
    pub version: String,
    #[serde(default, rename = "type")]
    pub type_: ItemType,
    pub source: ItemSource,
    /// Digest of the manifest (or index) to accept; anything else is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ItemPhase {
    #[default]
    Pending,
    Resolving,
    Downloading,
    Unpacking,
    Ready,
    Failed,
    Removed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub done_bytes: u64,
    pub total_bytes: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default)]
    pub phase: ItemPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Layer resource names, lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_config_digest: Option<String>,
    /// The generation whose source was last resolved.
    #[serde(default)]
    pub resolved_generation: i64,
    /// What instances of the item run with (image config process fields, item config), as
    /// read from the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<crate::itemconfig::RunConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<DateTime<Utc>>,
    /// Milliseconds of each phase of its last install: `resolve`, then `pull` (from the apply
    /// to every layer stored).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub phase_millis: std::collections::BTreeMap<String, u64>,
    /// In a unit, how far each node that runs the item has it (only nodes with an instance of
    /// it fetch it); the top-level phase and progress then sum these up.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub nodes: std::collections::BTreeMap<String, ItemOnNode>,
    /// In a unit whose nodes differ in platform, what each platform other than the top-level
    /// resolution's runs (`os/arch` → its resolution), written by its first node that needs it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub platforms: crate::kinds::item_platforms::Platforms,
    /// The platform (`os/arch`) the top-level resolution was made for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_for: Option<String>,
    /// The platforms (`os/arch`) the image's index offers; empty for a single manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<String>,
}
impl_status!(ItemStatus);

/// An Item on one node of a unit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemOnNode {
    #[serde(default)]
    pub phase: ItemPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Why it is not Ready there (the reason of the failed layer, or `Downloading`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Spec for ItemSpec {
    const KIND: &'static str = "Item";
    type Status = ItemStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_not_empty("spec.itemId", &self.item_id, errors);
        check_not_empty("spec.version", &self.version, errors);
        let s = &self.source;
        let given = [&s.registry, &s.http, &s.archive]
            .iter()
            .filter(|v| v.is_some())
            .count();
        if given != 1 {
            errors.push(FieldError::new(
                "spec.source",
                "exactly one of registry, http or archive must be set",
            ));
        }
        if let Some(url) = &s.http {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errors.push(FieldError::new(
                    "spec.source.http",
                    "must be an http:// or https:// URL",
                ));
            }
        }
        if let Some(r) = &s.registry {
            if r.is_empty() || r.contains(char::is_whitespace) || r.contains("://") {
                errors.push(FieldError::new(
                    "spec.source.registry",
                    "must be a reference like host[:port]/repo:tag or host/repo@sha256:…",
                ));
            }
        }
        if let Some(a) = &s.archive {
            check_not_empty("spec.source.archive", a, errors);
        }
        if let Some(d) = &self.digest {
            check_digest("spec.digest", d, errors);
        }
    }
}
