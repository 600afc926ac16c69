//! The RootfsSlot controller (runtime `rootfs`, one instance per node): updates the root
//! filesystem from a squashfs component (full, or incremental against the installed version)
//! through the action files the boot side (`deploy/aos-rootfs`) acts on: the image and
//! `do_update` are staged and the node reboots into a trial root; healthy for the probation
//! window, `do_apply` makes the boot side apply it for good; otherwise the trial is left
//! unconfirmed and the boot side reverts it. Every step is recorded before it is taken, a
//! second update waits for the pending one, and an update is installed only once the running
//! root says so (never merely because a record says it is pending).
#![warn(missing_docs)]

mod act;
pub mod flags;
mod observe;
pub mod plan;
mod reconciler;
pub mod records;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_slots::health::Health;
use aos_slots::machine::Machine;
use aos_slots::SlotsError;
use aos_store::StoreError;

pub use aos_slots::crash::{Crashpoints, Killed};
pub use reconciler::{controller, run, RootfsSlotReconciler};

/// A full rootfs image.
pub const FULL_MEDIA_TYPE: &str = "application/vnd.aos.image.component.full.v1+squashfs";
/// An incremental rootfs image.
pub const INC_MEDIA_TYPE: &str = "application/vnd.aos.image.component.inc.v1+squashfs";

/// Every crash point the controller asks, in the order an update meets them.
pub const CRASH_POINTS: &[&str] = &[
    "adopt",
    "stage",
    "stage:copied",
    "stage:recorded",
    "reboot",
    "trial",
    "check",
    "confirm",
    "confirm:recorded",
    "reject",
    "retry",
    "promote",
    "promote:recorded",
    "fail",
    "fail:recorded",
    "clean",
];

/// How the controller works.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The action files, the image and the records (outside the root being replaced).
    pub work_dir: PathBuf,
    /// The root the node runs (`/`), where the running version is read.
    pub root_dir: PathBuf,
    /// The file in the root whose first line is its version.
    pub version_file: String,
    /// Paths a full update keeps (the boot side reads them from `work_dir/preserve`).
    pub preserve: Vec<String>,
    /// Boots (or trial boots) an update gets, its probation window, the time between rounds.
    pub limits: aos_slots::health::Limits,
    /// How long after asking for a reboot the agent looks again if it still runs.
    pub reboot_wait: Duration,
    /// The node's own slot object (named after the node, like its Node): the only one it
    /// reconciles. `None`: any (a node of its own in tests).
    pub object: Option<String>,
    /// In a unit, this node's Node name: the components come from its own Layer copies.
    pub unit_node: Option<String>,
}

/// What the controller works with.
pub struct RootfsEnv {
    /// How it works.
    pub settings: Settings,
    /// Boot id, time and reboot.
    pub machine: Arc<dyn Machine>,
    /// The health gate.
    pub health: Arc<dyn Health>,
    /// The records.
    pub records: records::Records,
    /// Kills, for tests.
    pub crash: Crashpoints,
}

/// Why a reconcile of the RootfsSlot failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A step of the update (a file, a record, the reboot).
    #[error(transparent)]
    Slots(#[from] SlotsError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A test killed the agent at this step.
    #[error("killed at {0}")]
    Crashed(String),
}

impl From<Killed> for RootfsError {
    fn from(k: Killed) -> Self {
        RootfsError::Crashed(k.0)
    }
}

impl aos_reconcile::Reason for RootfsError {
    fn reason(&self) -> &'static str {
        match self {
            RootfsError::Slots(e) => e.reason(),
            RootfsError::Store(_) => "StoreError",
            RootfsError::Crashed(_) => "Killed",
        }
    }
}
