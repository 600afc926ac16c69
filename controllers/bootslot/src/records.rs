//! What the BootSlot controller keeps on disk, beside the store (which a device may lose): the
//! slots' state (which slot is main, what each holds, the last failed update) and the pending
//! update (its target, version, phase, attempts, the boot it was armed in, its steps). Both are
//! written atomically before every side effect they announce, so that a power cut at any moment
//! leaves a record that says what to do next.

use std::collections::BTreeMap;
use std::path::Path;

use aos_api::{UpdateInfo, UpdateStep};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use aos_slots::record;
use aos_slots::SlotsError;

/// The A/B slot names and the recovery entry's.
pub const A: &str = "a";
/// The second slot.
pub const B: &str = "b";
/// The recovery entry.
pub const RECOVERY: &str = "recovery";

/// What one slot holds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The version it holds, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `sha256:` of the bytes written, when aosd wrote them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Being written, or holding an update that failed: kept out of BootOrder until a good
    /// image is committed to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub broken: bool,
}

/// An update that did not take.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// The slot it was for.
    pub target: String,
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
    /// The slot first in BootOrder (`a` or `b`).
    pub main: String,
    /// What each slot holds.
    pub slots: BTreeMap<String, Held>,
    /// The last update that failed (cleared by a commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failure>,
    /// The last update that ended (committed or failed), with its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update: Option<UpdateInfo>,
}

impl State {
    /// The slot of the pair that is not main.
    pub fn fallback(&self) -> &'static str {
        if self.main == A {
            B
        } else {
            A
        }
    }

    /// What `slot` holds.
    pub fn version(&self, slot: &str) -> Option<&str> {
        self.slots.get(slot).and_then(|h| h.version.as_deref())
    }

    /// Whether `slot` must stay out of BootOrder.
    pub fn broken(&self, slot: &str) -> bool {
        self.slots.get(slot).is_some_and(|h| h.broken)
    }
}

/// Where a pending update is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    /// The image is (being) written to the target; nothing points at it yet.
    Writing,
    /// Written and verified; `BootNext` names the target; a reboot is due.
    Armed,
    /// Booted into the target; health rounds run.
    Probation,
    /// Healthy: BootOrder is being changed.
    Committing,
    /// Given up in the target: rebooting into main.
    RollingBack,
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
    /// The slot written to.
    pub target: String,
    /// The version written.
    pub version: String,
    /// `sha256:` of the component blob.
    pub blob_digest: String,
    /// Where it is.
    pub phase: Phase,
    /// Boots into the target so far.
    pub attempts: u32,
    /// The boot in which the target was armed (or probation began).
    pub boot_id: String,
    /// When probation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// The last round of health checks in probation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
    /// Why it is rolling back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<(String, String)>,
    /// `sha256:` of the bytes written to the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<String>,
    /// Its steps so far.
    #[serde(default)]
    pub steps: Vec<UpdateStep>,
}

impl Pending {
    /// What status shows of it.
    pub fn info(&self, max_attempts: u32) -> UpdateInfo {
        UpdateInfo {
            target: self.target.clone(),
            version: self.version.clone(),
            attempts: self.attempts,
            max_attempts,
            steps: self.steps.clone(),
        }
    }

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
}

/// The two records in the controller's work directory.
#[derive(Clone, Debug)]
pub struct Records {
    dir: std::path::PathBuf,
}

impl Records {
    /// The records under `dir` (made if missing).
    pub fn new(dir: &Path) -> Result<Self, SlotsError> {
        std::fs::create_dir_all(dir).map_err(|source| SlotsError::Io {
            what: format!("failed to create {}", dir.display()),
            source,
        })?;
        Ok(Records {
            dir: dir.to_path_buf(),
        })
    }

    /// The slots' state.
    pub fn state(&self) -> Result<Option<State>, SlotsError> {
        record::load(&self.dir.join("state.json"))
    }

    /// Writes the slots' state.
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
