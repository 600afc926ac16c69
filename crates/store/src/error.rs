//! The error classes of the store, shared by every backend; the API server maps them to gRPC
//! codes in one place.

use aos_api::{Revision, ValidationErrors};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: String, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: String, name: String },
    #[error("{kind} {name:?} was modified: expected resourceVersion {expected}, found {actual}")]
    Conflict {
        kind: String,
        name: String,
        expected: Revision,
        actual: Revision,
    },
    #[error(
        "revision {requested} is no longer in the event log (oldest kept: {oldest}); list again"
    )]
    Gone {
        requested: Revision,
        oldest: Revision,
    },
    #[error("invalid object: {0}")]
    Invalid(#[from] ValidationErrors),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store failure: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn not_found(kind: &str, name: &str) -> Self {
        StoreError::NotFound {
            kind: kind.to_string(),
            name: name.to_string(),
        }
    }

    /// An object larger than a backend stores.
    pub fn too_large(size: usize, max: usize) -> Self {
        StoreError::Invalid(
            aos_api::FieldError::new(
                "metadata",
                format!("the object would be {size} bytes; objects are at most {max} bytes"),
            )
            .into(),
        )
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}
