//! The condition types and reasons controllers write and clients read: one name for each, so
//! that a controller and `aosctl wait --for=condition=...` cannot drift apart. Reasons of
//! failed reconciles come from each error's `Reason` and are not listed here.

/// Every kind: the object is what its spec asks for.
pub const READY: &str = "Ready";
/// Node: the store works and holds no damaged records.
pub const STORE_HEALTHY: &str = "StoreHealthy";
/// Node: containerd answers.
pub const CONTAINER_RUNTIME_READY: &str = "ContainerRuntimeReady";
/// Instance: its task runs.
pub const RUNNING: &str = "Running";
/// Instance: the Item of its version is Ready.
pub const ITEM_READY: &str = "ItemReady";
/// Instance: more state than its item's `stateLimit`.
pub const STATE_LIMIT_EXCEEDED: &str = "StateLimitExceeded";
/// Instance: more storage than its item's `storageLimit`.
pub const STORAGE_LIMIT_EXCEEDED: &str = "StorageLimitExceeded";
/// Instance: sent more than its item's `uploadLimit`.
pub const UPLOAD_LIMIT_EXCEEDED: &str = "UploadLimitExceeded";
/// Instance: received more than its item's `downloadLimit`.
pub const DOWNLOAD_LIMIT_EXCEEDED: &str = "DownloadLimitExceeded";
/// Instance: the unit's placement chose its node (`spec.nodeName`), or says why it cannot.
pub const SCHEDULED: &str = "Scheduled";
/// Network: its VLAN link is attached.
pub const VLAN_READY: &str = "VlanReady";
/// Network: its resolver answers.
pub const DNS_READY: &str = "DnsReady";
/// Network, in a unit: the writing node routes to every other node's part of the subnet.
pub const ROUTES_READY: &str = "RoutesReady";

/// Node: the cloud connector has a session with its cloud (written by the connector; its
/// `lastTransitionTime` says since when the cloud is away, for `offlineTTL`).
pub const CLOUD_CONNECTED: &str = "CloudConnected";

/// Reasons written with the conditions above.
pub mod reason {
    /// Any kind: the object is being deleted.
    pub const TERMINATING: &str = "Terminating";
    /// Node: the status was just reported.
    pub const NODE_REPORTED: &str = "NodeReported";
    /// Node: another node saw no heartbeat from it for `node.lost_after`.
    pub const HEARTBEAT_LOST: &str = "HeartbeatLost";
    /// Instance, Scheduled: placed on a node.
    pub const PLACED: &str = "Placed";
    /// Instance, Scheduled: no node of the unit can take it (the message says why, node by node).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    pub const STORE_INTACT: &str = "StoreIntact";
    pub const STORE_FAILING: &str = "StoreFailing";
    pub const DAMAGED_RECORDS: &str = "DamagedRecords";
    /// Node: containerd answers.
    pub const ANSWERING: &str = "Answering";
    /// Node, Instance: the container runtime does not answer, or the node runs no such runtime.
    pub const RUNTIME_UNAVAILABLE: &str = "RuntimeUnavailable";
    /// Item: every layer is stored.
    pub const LAYERS_READY: &str = "LayersReady";
    /// Item event: every layer was fetched, verified and stored.
    pub const PULLED: &str = "Pulled";
    /// Item (in a unit): no node runs an instance of it, so none fetches it.
    pub const NOT_PLACED: &str = "NotPlaced";
    pub const DOWNLOADING: &str = "Downloading";
    /// Layer: verified and stored.
    pub const STORED: &str = "Stored";
    /// Layer: the stored layer changed on disk.
    pub const TAMPERED: &str = "Tampered";
    /// Network.
    pub const BRIDGE_UP: &str = "BridgeUp";
    pub const ATTACHED: &str = "Attached";
    pub const SERVING: &str = "Serving";
    pub const LISTEN_FAILED: &str = "ListenFailed";
    /// Network, in a unit: routes to the other nodes' parts.
    pub const ROUTED: &str = "Routed";
    pub const ROUTE_FAILED: &str = "RouteFailed";
    /// Network: instances are still attached.
    pub const IN_USE: &str = "InUse";
    pub const NETWORK_NOT_READY: &str = "NetworkNotReady";
    pub const NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";
    /// Instance: its Item is not Ready.
    pub const WAITING_FOR_ITEM: &str = "WaitingForItem";
    /// Instance, ItemReady: the Item is Ready.
    pub const ITEM_IS_READY: &str = "Ready";
    /// Instance, Running: the task was started (or adopted).
    pub const STARTED: &str = "Started";
    /// Instance event: an out-of-date task was replaced by a new one.
    pub const REPLACED: &str = "Replaced";
    /// Instance event: the task was stopped and what it had on the node removed.
    pub const REMOVED: &str = "Removed";
    /// Instance, Ready: the task runs and it has no probes.
    pub const TASK_RUNNING: &str = "Running";
    pub const PROBES_PENDING: &str = "ProbesPending";
    pub const PROBES_PASSED: &str = "ProbesPassed";
    pub const STARTUP_PENDING: &str = "StartupPending";
    pub const READINESS_FAILED: &str = "ReadinessFailed";
    pub const STARTUP_PROBE_FAILED: &str = "StartupProbeFailed";
    pub const LIVENESS_PROBE_FAILED: &str = "LivenessProbeFailed";
    /// Node, CloudConnected.
    pub const CONNECTED: &str = "Connected";
    pub const DISCONNECTED: &str = "Disconnected";
    /// Instance: the cloud has been away longer than the item's `offlineTTL`.
    pub const OFFLINE_TTL_EXPIRED: &str = "OfflineTTLExpired";
    /// Instance: the start burst is spent.
    pub const CRASH_LOOP: &str = "CrashLoop";
    /// Instance: the task stopped and restarts after the restart interval.
    pub const RESTARTING: &str = "Restarting";
    /// Instance exits.
    pub const OOM_KILLED: &str = "OOMKilled";
    pub const COMPLETED: &str = "Completed";
    pub const KILLED: &str = "Killed";
    /// The task is gone without an exit status (its shim died).
    pub const TASK_LOST: &str = "TaskLost";
    pub const ERROR: &str = "Error";
    /// Instance, limits.
    pub const OVER_LIMIT: &str = "OverLimit";
    pub const WITHIN_LIMIT: &str = "WithinLimit";
}
