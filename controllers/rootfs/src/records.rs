//! What the RootfsSlot controller keeps in its work directory besides the action files: the
//! installed version (and the last failed update), and the pending update with its phase, the
//! boot it was taken in and its steps. Both are written atomically before the side effect they
//! announce.

use aos_api::{UpdateInfo, UpdateStep};
use aos_slots::record;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An update that did not take.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The version that failed.
    pub version: String,
    /// CamelCase.
    pub reason: String,
    /// For people.
    pub message: String,
    /// When it was given up.
    pub at: DateTime<Utc>,
}

/// `state.json`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The version the root holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<String>,
    /// `sha256:` of the image it was installed from, when aosd installed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The last update that failed (cleared by the next install).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
    /// The last update that ended, with its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateInfo>,
}

/// Where a pending update is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// The image is being copied into the work directory.
    Staging,
    /// Staged with `do_update`: a reboot into the trial is due.
    Staged,
    /// The trial root runs: health rounds.
    Trial,
    /// Confirmed with `do_apply`: a reboot applies it.
    Applying,
    /// Unhealthy: a reboot without `do_apply` reverts it.
    Reverting,
}

pub use aos_slots::health::HealthRecord;

/// `pending.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The version.
    pub version: String,
    /// `full` or `incremental`.
    pub kind: String,
    /// `sha256:` of the image.
    pub digest: String,
    /// Where it is.
    pub phase: Phase,
    /// Trial boots so far.
    pub attempts: u32,
    /// Boots taken to apply it.
    #[serde(default)]
    pub apply_boots: u32,
    /// The boot in which the phase began.
    pub boot_id: String,
    /// When the trial began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last round of health checks in the trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
    /// Why it is being reverted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<(String, String)>,
    /// Its steps so far.
    #[serde(default)]
    pub steps: Vec<UpdateStep>,
}

impl Pending {
    /// Adds a step at `at`; the previous step's duration ends there.
    pub fn step(&mut self, step: &str, at: DateTime<Utc>, message: &str) {
        record::push_step(&mut self.steps, step, at, message);
    }

    /// What status shows of it.
    pub fn info(&self, max_attempts: u32) -> UpdateInfo {
        UpdateInfo {
            target: "rootfs".into(),
            version: self.version.clone(),
            attempts: self.attempts,
            max_attempts,
            steps: self.steps.clone(),
        }
    }
}

/// The state and pending records.
pub type Records = record::Records<State, Pending>;
