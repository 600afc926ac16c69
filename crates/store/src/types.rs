//! Values the store hands out: lists, watch events, apply outcomes.

use aos_api::{DynObject, Revision};
use serde::{Deserialize, Serialize};

/// Objects and the revision they were read at (watch from there to miss nothing).
#[derive(Clone, Debug, Default)]
pub struct ObjectList {
    pub items: Vec<DynObject>,
    pub revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One change; `revision` is the store revision of the change (for `Deleted`, the revision
/// of the deletion, while the object keeps its last `resourceVersion`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub type_: EventType,
    pub revision: Revision,
    pub object: DynObject,
}

/// What an apply did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Applied {
    pub object: DynObject,
    pub outcome: Outcome,
}
