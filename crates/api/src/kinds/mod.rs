//! The spec and status of every kind. Each file owns one kind (or two close ones).

mod event;
mod instance;
mod item;
mod item_nodes;
mod item_platforms;
mod layer;
mod network;
mod network_nodes;
mod node;
mod slots;

pub use event::*;
pub use instance::*;
pub use item::*;
pub use item_platforms::*;
pub use layer::*;
pub use network::*;
pub use network_nodes::*;
pub use node::*;
pub use slots::*;

use serde::{Deserialize, Serialize};

/// Names one version of a deployable item.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ItemRef {
    pub item_id: String,
    pub version: String,
}

/// The annotation the API server sets on every object it writes: the uid of the writer (a
/// client's own value is replaced). Controllers use it to hold a writer to what that writer may
/// do (a non-root writer's `archive:` source must be in `images.archive_dirs`).
pub const APPLIED_BY: &str = "aos.edge/applied-by";
