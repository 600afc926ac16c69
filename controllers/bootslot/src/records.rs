//! What the BootSlot controller keeps on disk, beside the store (which a device may lose): the
//! slots' state (which slot is main, what each holds, the last failed update) and the pending
//! update (its target, version, phase, attempts, the boot it was armed in, its steps). Both are
//! written atomically before every side effect they announce, so that a power cut at any moment
//! leaves a record that says what to do next.

use std::collections::BTreeMap;

use aos_api::{UpdateInfo, UpdateStep};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use aos_slots::record;

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

pub use aos_slots::health::HealthRecord;

/// `pending.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// The slot written to.
    pub target: String,
    /// The version written.
    pub version: String,
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
    /// What the target held before (restored when the image is refused unwritten).
    #[serde(default)]
    pub previous: Held,
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
        record::push_step(&mut self.steps, step, at, message);
    }
}

/// The state and pending records.
pub type Records = record::Records<State, Pending>;
