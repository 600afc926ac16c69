//! BootSlot and RootfsSlot: the single-instance component runtimes (A/B boot partitions and
//! the rootfs update through action files).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::check_not_empty;
use crate::{impl_status, CommonStatus, FieldError, ItemRef, Spec};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootSlotSpec {
    /// The boot component to install; absent keeps what is installed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
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
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RootfsSlotSpec {
    /// The rootfs component (full or incremental) to install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemRef>,
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
}
impl_status!(RootfsSlotStatus);

impl Spec for RootfsSlotSpec {
    const KIND: &'static str = "RootfsSlot";
    type Status = RootfsSlotStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_item(&self.item, errors);
    }
}
