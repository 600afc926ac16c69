//! The cloud connector of aosd: [`protocol`] reads and writes the cloud's messages;
//! [`desired`] turns a desired status into the resources the node should hold; [`status`]
//! turns the store's objects into the unit status the cloud reads.

pub mod apply;
pub mod connector;
pub mod desired;
pub mod monitoring;
pub mod protocol;
pub mod status;
pub mod tls;
