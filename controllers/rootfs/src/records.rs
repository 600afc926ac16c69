//! What the RootfsSlot controller keeps in its work directory besides the action files: the
//! installed version (and the last failed update), and the pending update with its phase, the
//! boot it was taken in and its steps. Both are written atomically before the side effect they
//! announce.

use std::path::{Path, PathBuf};

use aos_api::{UpdateInfo, UpdateStep};
use aos_slots::record;
use aos_slots::SlotsError;
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

/// The last round of health checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    /// Every check passed.
    pub ok: bool,
    /// When the round ended.
    pub at: DateTime<Utc>,
    /// What passed, or what failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

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
        if let Some(last) = self.steps.last_mut() {
            if last.duration_ms.is_none() {
                last.duration_ms = Some((at - last.at).num_milliseconds().max(0) as u64);
            }
        }
        self.steps.push(UpdateStep {
            step: step.into(),
            at,
            duration_ms: None,
            message: message.into(),
        });
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

/// The records under the work directory's `records/`.
#[derive(Clone, Debug)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records of the work directory `work` (made if missing).
    pub fn new(work: &Path) -> Result<Self, SlotsError> {
        let dir = work.join("records");
        std::fs::create_dir_all(&dir).map_err(|source| SlotsError::Io {
            what: format!("failed to create {}", dir.display()),
            source,
        })?;
        Ok(Records { dir })
    }

    /// The installed state.
    pub fn state(&self) -> Result<Option<State>, SlotsError> {
        record::load(&self.dir.join("state.json"))
    }

    /// Writes the installed state.
    pub fn save_state(&self, s: &State) -> Result<(), SlotsError> {
        record::save(&self.dir.join("state.json"), s)
    }

    /// The pending update.
    pub fn pending(&self) -> Result<Option<Pending>, SlotsError> {
        record::load(&self.dir.join("pending.json"))
    }

    /// Writes the pending update.
    pub fn save_pending(&self, p: &Pending) -> Result<(), SlotsError> {
        record::save(&self.dir.join("pending.json"), p)
    }

    /// Forgets the pending update.
    pub fn clear_pending(&self) -> Result<(), SlotsError> {
        record::remove(&self.dir.join("pending.json"))
    }
}
