//! Placement of a unit's instances on its nodes. [`rules`] decides; the controller that reads
//! Nodes, Items and Instances and writes `spec.nodeName` is built on it.

pub mod lease;
pub mod rules;
