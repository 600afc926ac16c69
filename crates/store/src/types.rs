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

/// A stored record that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRecord {
    /// `Kind/name` it was stored under.
    pub key: String,
    pub reason: String,
    /// Moved aside at open (it no longer exists for readers), or found later (reads of it
    /// fail, lists skip it).
    pub quarantined: bool,
}

/// What a backend says of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// Why writes fail now, if they do.
    pub failure: Option<String>,
    pub damaged: Vec<DamagedRecord>,
}

impl StoreHealth {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none() && self.damaged.is_empty()
    }

    /// One line for a person: `ok`, or what is wrong.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = &self.failure {
            parts.push(format!("store failing: {f}"));
        }
        if !self.damaged.is_empty() {
            let keys: Vec<&str> = self.damaged.iter().map(|d| d.key.as_str()).collect();
            parts.push(format!(
                "{} damaged object(s) quarantined: {}",
                self.damaged.len(),
                keys.join(", ")
            ));
        }
        if parts.is_empty() {
            "ok".into()
        } else {
            parts.join("; ")
        }
    }
}
