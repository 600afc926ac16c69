//! Ports that more than one controller speaks: the Instance controller drives `Networks`, the
//! Network controller's attacher implements it. Each port comes with a fake (for tests of its
//! users) and a conformance suite that the fake and the real implementation both pass.
#![warn(missing_docs)]

pub mod networks;

pub use networks::{Attachment, NetworkError, Networks, Shaping};
