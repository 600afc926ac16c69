//! BootSlot and RootfsSlot: the single-instance component runtimes (A/B boot partitions and
//! the rootfs update through action files).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::check_not_empty;
use crate::{impl_status, CommonStatus, FieldError, ItemRef, Spec};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootSlotSpec {
    /// The boot component to install in the A/B pair; absent keeps what is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
    /// The boot component of the recovery entry; absent keeps what is there. Installed only
    /// while the A/B pair is healthy and idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<ItemRef>,
}

impl BootSlotSpec {
    /// Every component Item the slot names.
    pub fn components(&self) -> Vec<&ItemRef> {
        self.item.iter().chain(self.recovery.iter()).collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotInfo {
    pub name: String,
    pub device: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_entry: Option<String>,
    /// `main` (first in BootOrder), `fallback` or `recovery`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

/// Where an OS update is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum UpdatePhase {
    /// Nothing to do: the wanted version runs (or nothing is wanted).
    #[default]
    Idle,
    /// Waiting for the component's Item to be Ready.
    Waiting,
    /// Writing and verifying the image.
    Writing,
    /// Rebooting into the update.
    Rebooting,
    /// Booted into the update, checking its health.
    Probation,
    /// Healthy: making the update the one that boots.
    Committing,
    /// Unhealthy or not booting: going back to what ran before.
    RollingBack,
    /// The update did not take (the reason is in the Ready condition).
    Failed,
}

/// One step of an update and when it happened.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStep {
    pub step: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// How long the step took, when it is over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The update in progress (or the last one).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateInfo {
    /// The slot written to.
    pub target: String,
    pub version: String,
    /// Boots into the update tried so far, and how many are allowed.
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<UpdateStep>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BootSlotStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<SlotInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    #[serde(default)]
    pub phase: UpdatePhase,
    /// The update in progress, or the last one with its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateInfo>,
}
impl_status!(BootSlotStatus);

fn check_item(item: &Option<ItemRef>, errors: &mut Vec<FieldError>) {
    if let Some(i) = item {
        check_not_empty("spec.item.itemId", &i.item_id, errors);
        check_not_empty("spec.item.version", &i.version, errors);
    }
}

impl Spec for BootSlotSpec {
    const KIND: &'static str = "BootSlot";
    type Status = BootSlotStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_item(&self.item, errors);
        if let Some(r) = &self.recovery {
            check_not_empty("spec.recovery.itemId", &r.item_id, errors);
            check_not_empty("spec.recovery.version", &r.version, errors);
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RootfsSlotSpec {
    /// The rootfs component (full or incremental) to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
}

impl RootfsSlotSpec {
    /// Every component Item the slot names.
    pub fn components(&self) -> Vec<&ItemRef> {
        self.item.iter().collect()
    }
}

/// The action file the runtime last saw.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub enum RootfsAction {
    #[default]
    None,
    DoUpdate,
    Updated,
    DoApply,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RootfsSlotStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_version: Option<String>,
    #[serde(default)]
    pub action: RootfsAction,
    #[serde(default)]
    pub phase: UpdatePhase,
    /// The last round of health checks of a trial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// The update in progress, or the last one with its steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateInfo>,
}
impl_status!(RootfsSlotStatus);

impl Spec for RootfsSlotSpec {
    const KIND: &'static str = "RootfsSlot";
    type Status = RootfsSlotStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_item(&self.item, errors);
    }
}
