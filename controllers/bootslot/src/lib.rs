//! The BootSlot controller (runtime `boot`, one instance per node): keeps two boot slots (A/B)
//! and an optional recovery entry in the EFI boot menu, installs a boot component into the slot
//! that is not running, tries it once through `BootNext`, keeps it (first in `BootOrder`) only
//! after it booted and stayed healthy for the probation window, and otherwise goes back to what
//! ran before, with a bounded number of boot attempts. Every step is announced in a record on
//! disk before it is taken, so that a power cut at any moment resumes where it was.
#![warn(missing_docs)]

mod act;
mod observe;
pub mod plan;
mod reconciler;
pub mod records;
mod report;

use std::path::PathBuf;
use std::sync::Arc;

use aos_slots::efi::{EfiVars, HardDrive};
use aos_slots::health::Health;
use aos_slots::machine::Machine;
use aos_slots::SlotsError;
use aos_store::StoreError;

pub use aos_slots::crash::{Crashpoints, Killed};
pub use reconciler::{controller, run, BootSlotReconciler};

/// The media type of a boot component: a gzip partition image.
pub const BOOT_MEDIA_TYPE: &str = "application/vnd.aos.image.component.full.v1+gzip";

/// One slot: its name, its device, and the partition the boot entry names (derived from the
/// device when not given).
#[derive(Clone, Debug)]
pub struct SlotSetting {
    /// `a`, `b` or `recovery`.
    pub name: String,
    /// The partition (or a file standing for one).
    pub device: PathBuf,
    /// The GPT partition, when the device cannot say (a file in tests).
    pub partition: Option<HardDrive>,
}

/// How the controller works.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Slot A.
    pub a: SlotSetting,
    /// Slot B.
    pub b: SlotSetting,
    /// The recovery entry, kept last in BootOrder.
    pub recovery: Option<SlotSetting>,
    /// The loader every entry starts (`\EFI\BOOT\BOOTX64.EFI`).
    pub loader: String,
    /// The file inside a slot's filesystem that names its version.
    pub version_file: String,
    /// Boots (or trial boots) an update gets, its probation window, the time between rounds.
    pub limits: aos_slots::health::Limits,
    /// How long after asking for a reboot the agent looks again (and asks again) if it is
    /// still running.
    pub reboot_wait: std::time::Duration,
    /// The node's own slot object (named after the node, like its Node): the only one it
    /// reconciles. `None`: any (a node of its own in tests).
    pub object: Option<String>,
    /// In a unit, this node's Node name: the components come from its own Layer copies.
    pub unit_node: Option<String>,
}

impl Settings {
    /// The slot named `name`.
    pub fn slot(&self, name: &str) -> Option<&SlotSetting> {
        match name {
            records::A => Some(&self.a),
            records::B => Some(&self.b),
            records::RECOVERY => self.recovery.as_ref(),
            _ => None,
        }
    }

    /// Every slot, A and B first.
    pub fn slots(&self) -> Vec<&SlotSetting> {
        [Some(&self.a), Some(&self.b), self.recovery.as_ref()]
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Every crash point the BootSlot controller asks, in the order an update meets them.
pub const CRASH_POINTS: &[&str] = &[
    "adopt",
    "entries",
    "entries:created",
    "write",
    "write:recorded",
    "verify",
    "arm",
    "arm:recorded",
    "reboot",
    "probation",
    "check",
    "commit",
    "commit:recorded",
    "commit:order",
    "retry",
    "retry:recorded",
    "rollback",
    "rollback:recorded",
    "fail",
    "fail:recorded",
    "abandon",
];

/// Reads the version a slot holds (before the first record): by default the first line of
/// the version file in the slot's filesystem, mounted read-only.
pub type VersionReader = Arc<dyn Fn(&SlotSetting, &str) -> Option<String> + Send + Sync>;

/// The version file in the slot's filesystem (see [`VersionReader`]).
pub fn filesystem_versions() -> VersionReader {
    Arc::new(|slot: &SlotSetting, file: &str| {
        aos_slots::device::SlotDevice::new(&slot.device)
            .read_version(file)
            .unwrap_or_else(|e| {
                tracing::warn!(slot = %slot.name, error = %e, "failed to read the slot's version");
                None
            })
    })
}

/// What the controller works with.
pub struct BootEnv {
    /// How it works.
    pub settings: Settings,
    /// The EFI variables.
    pub efi: Arc<dyn EfiVars>,
    /// Boot id, time and reboot.
    pub machine: Arc<dyn Machine>,
    /// The health gate.
    pub health: Arc<dyn Health>,
    /// The records in the work directory.
    pub records: records::Records,
    /// Kills, for tests.
    pub crash: Crashpoints,
    /// How a slot's version is read.
    pub versions: VersionReader,
}

/// Why a reconcile of the BootSlot failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// A step of the update (EFI variables, the slot device, a record).
    #[error(transparent)]
    Slots(#[from] SlotsError),
    /// The store.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The settings do not describe the node.
    #[error("{0}")]
    Config(String),
    /// A test killed the agent at this step.
    #[error("killed at {0}")]
    Crashed(String),
}

impl From<Killed> for BootError {
    fn from(k: Killed) -> Self {
        BootError::Crashed(k.0)
    }
}

impl aos_reconcile::Reason for BootError {
    fn reason(&self) -> &'static str {
        match self {
            BootError::Slots(e) => e.reason(),
            BootError::Store(_) => "StoreError",
            BootError::Config(_) => "InvalidConfig",
            BootError::Crashed(_) => "Killed",
        }
    }
}
