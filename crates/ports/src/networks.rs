//! The `Networks` port: what the Instance controller needs from the network side. An instance
//! with `spec.network` joins the namespace the port names, attached before its task starts and
//! detached after its task is gone.

use std::path::PathBuf;

pub mod conformance;
pub mod fake;

/// Where an attached instance is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// The instance's address on the network.
    pub ip: String,
    /// The network's gateway (its bridge), the instance's default route.
    pub gateway: String,
    /// Name servers for `/etc/resolv.conf` (empty: the host's).
    pub dns: Vec<String>,
}

/// Speed limits of an instance's traffic, in bytes per second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shaping {
    /// What the instance sends.
    pub upload: Option<u64>,
    /// What the instance receives.
    pub download: Option<u64>,
}

/// Why an instance cannot be attached (yet): a CamelCase reason for its conditions, and the
/// details.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NetworkError {
    /// CamelCase, for the instance's conditions (`NetworkNotReady`, `NoAddress`, ...).
    pub reason: &'static str,
    /// What happened, for people.
    pub message: String,
}

/// What the Instance controller needs of instance networking: a namespace per instance, joined
/// to a network (and left) with an address of its own and its speed limits.
#[async_trait::async_trait]
pub trait Networks: Send + Sync {
    /// The network namespace the instance's task joins (known before it exists).
    fn netns_path(&self, instance: &str) -> PathBuf;
    /// Attaches the instance with these speed limits (idempotent; the limits are set each
    /// time), publishing the host ports of its spec; `Err` says why it cannot be yet.
    async fn attach(
        &self,
        instance: &str,
        network_id: &str,
        shaping: Shaping,
    ) -> Result<Attachment, NetworkError>;
    /// Bytes the instance received and sent on its network, if it is attached.
    fn counters(&self, instance: &str) -> Option<(u64, u64)>;
    /// Removes the namespace, links and address of the instance (idempotent).
    async fn detach(&self, instance: &str, network_id: &str) -> Result<(), NetworkError>;
}
