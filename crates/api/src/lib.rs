//! Resource model of aosd: the Kubernetes-shaped objects (metadata, spec, status, conditions) of
//! every kind, their validation, the name-based ids of instances and runtimes, label selectors,
//! durations, and the reading of YAML/JSON manifests with field and line in every error.

pub mod condition;
pub mod crd;
pub mod duration;
pub mod ids;
pub mod itemconfig;
pub mod kinds;
pub mod manifest;
pub mod meta;
pub mod registry;
pub mod reserve;
pub mod selector;
pub mod validate;

pub use duration::AosDuration;
pub use itemconfig::ItemConfig;
pub use kinds::*;
pub use meta::*;
pub use registry::{KindInfo, KINDS};
pub use selector::Selector;
pub use validate::{FieldError, ValidationErrors};

/// The API group and version of every aosd resource.
pub const API_VERSION: &str = "aos.edge/v1alpha1";
