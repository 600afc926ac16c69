//! The messages between a node and its cloud, shaped after the reference: JSON objects with a
//! `messageType`. Keys are matched case-insensitively (they are rewritten to their canonical
//! camelCase before reading) and a missing scalar reads as 0, "" or false. A message is
//! refused, with a reason and without touching the node, when it is too large, not JSON, of
//! an unknown type, or of the wrong shape.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a message was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    #[error("the message is {size} bytes; at most {max} are read")]
    TooLarge { size: usize, max: usize },
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("the message has no messageType")]
    NoType,
    #[error("unknown messageType {0:?}")]
    UnknownType(String),
    #[error("the {kind} message does not read: {message}")]
    Shape { kind: &'static str, message: String },
}

/// `{id}` (items, subjects, owners).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "camelCase", default)]
pub struct Ident {
    pub id: String,
}

/// `{id, type}` of an item.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", default)]
pub struct ItemIdent {
    pub id: String,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
}

/// `{codename}` of a node or a runtime.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", default)]
pub struct Codename {
    pub codename: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DesiredNode {
    pub item: Codename,
    /// `provisioned` or `paused`.
    pub state: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Codename>,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub node_group_subject: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_rules: Option<aos_api::AlertRules>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_ratios: Option<aos_api::ResourceRatios>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    pub priority: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct UnitConfig {
    pub format_version: String,
    pub version: String,
    pub nodes: Vec<NodeConfig>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DesiredItem {
    pub item: ItemIdent,
    pub version: String,
    pub owner: Ident,
    /// Pins the image: the digest of its index (or manifest).
    pub index_digest: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DesiredInstance {
    pub item: Ident,
    pub subject: Ident,
    pub priority: u64,
    /// Instances 0..numInstances−1 (a missing one means none).
    pub num_instances: u64,
    /// Node labels the instances need.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// What the cloud wants the unit to be.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct DesiredStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub correlation_id: String,
    pub nodes: Vec<DesiredNode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_config: Option<UnitConfig>,
    pub items: Vec<DesiredItem>,
    pub instances: Vec<DesiredInstance>,
    pub subjects: Vec<Value>,
    pub certificates: Vec<Value>,
    pub certificate_chains: Vec<Value>,
}

/// `{aosCode, exitCode, message}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorInfo {
    pub aos_code: i64,
    pub exit_code: i64,
    pub message: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ItemState {
    pub item: ItemIdent,
    pub version: String,
    /// unknown, downloading, pending, installing, installed, removing, removed, failed.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceState {
    pub node: Codename,
    pub runtime: Codename,
    /// The index.
    pub instance: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_checksum: Option<String>,
    /// activating, active, inactive, failed.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
}

/// The instances of one (item, subject, version).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstancesState {
    pub item: Ident,
    pub subject: Ident,
    pub version: String,
    pub instances: Vec<InstanceState>,
}

/// What the unit is; `isDeltaInfo` marks a partial one (only what changed; a removed item or
/// group is reported with state `removed` / no instances).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct UnitStatus {
    pub is_delta_info: bool,
    pub items: Vec<ItemState>,
    pub instances: Vec<InstancesState>,
}

/// One alert, as the cloud reads it: `{tag, timestamp, …}` with the kind's own fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub tag: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Alerts {
    pub items: Vec<Alert>,
}

/// Every message this node reads or writes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "messageType", rename_all = "camelCase")]
pub enum Message {
    DesiredStatus(DesiredStatus),
    UnitStatus(UnitStatus),
    Alerts(Alerts),
    MonitoringData(crate::monitoring::MonitoringData),
}

impl Message {
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::DesiredStatus(_) => "desiredStatus",
            Message::UnitStatus(_) => "unitStatus",
            Message::Alerts(_) => "alerts",
            Message::MonitoringData(_) => "monitoringData",
        }
    }

    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

const MESSAGE_TYPES: &[&str] = &["desiredStatus", "unitStatus", "alerts", "monitoringData"];

/// Every key the protocol's objects use, in canonical form.
const KEYS: &[&str] = &[
    "messageType",
    "correlationId",
    "nodes",
    "unitConfig",
    "items",
    "instances",
    "subjects",
    "certificates",
    "certificateChains",
    "item",
    "state",
    "codename",
    "formatVersion",
    "version",
    "node",
    "nodeGroupSubject",
    "alertRules",
    "resourceRatios",
    "labels",
    "priority",
    "id",
    "type",
    "owner",
    "indexDigest",
    "subject",
    "numInstances",
    "cpu",
    "ram",
    "storage",
    "download",
    "upload",
    "partitions",
    "name",
    "minTimeout",
    "minThreshold",
    "maxThreshold",
    "isDeltaInfo",
    "runtime",
    "instance",
    "stateChecksum",
    "errorInfo",
    "aosCode",
    "exitCode",
    "message",
    "tag",
    "timestamp",
];

static CANONICAL: LazyLock<HashMap<String, &'static str>> = LazyLock::new(|| {
    KEYS.iter()
        .chain(MESSAGE_TYPES)
        .map(|k| (k.to_ascii_lowercase(), *k))
        .collect()
});

/// Rewrites every known key (and the message type) to its canonical spelling.
fn canonical(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let old = std::mem::take(m);
            for (k, mut inner) in old {
                canonical(&mut inner);
                let key = CANONICAL
                    .get(&k.to_ascii_lowercase())
                    .map_or(k, |c| (*c).to_string());
                if key == "messageType" {
                    if let Value::String(t) = &mut inner {
                        if let Some(c) = CANONICAL.get(&t.to_ascii_lowercase()) {
                            *t = (*c).to_string();
                        }
                    }
                }
                m.insert(key, inner);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(canonical),
        _ => {}
    }
}

/// Reads one message of at most `max` bytes.
pub fn parse(text: &str, max: usize) -> Result<Message, ProtocolError> {
    if text.len() > max {
        return Err(ProtocolError::TooLarge {
            size: text.len(),
            max,
        });
    }
    let mut v: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    canonical(&mut v);
    let kind = match v.get("messageType") {
        Some(Value::String(t)) => t.clone(),
        _ => return Err(ProtocolError::NoType),
    };
    let Some(kind) = MESSAGE_TYPES.iter().find(|t| **t == kind) else {
        return Err(ProtocolError::UnknownType(kind));
    };
    serde_json::from_value(v).map_err(|e| ProtocolError::Shape {
        kind,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_the_type_are_read_in_any_case() {
        let m = parse(
            r#"{"MESSAGETYPE": "DesiredStatus", "Items": [{"ITEM": {"Id": "a", "TYPE": "service"}, "version": "1"}],
                "instances": [{"item": {"id": "a"}, "SUBJECT": {"id": "s"}, "numinstances": 2}]}"#,
            1 << 20,
        )
        .unwrap();
        let Message::DesiredStatus(d) = m else {
            panic!("{m:?}")
        };
        assert_eq!(d.items[0].item.id, "a");
        assert_eq!(d.instances[0].num_instances, 2);
        assert_eq!(d.instances[0].subject.id, "s");
    }

    #[test]
    fn a_missing_scalar_reads_as_its_zero() {
        let m = parse(
            r#"{"messageType": "desiredStatus", "instances": [{"item": {"id": "a"}}]}"#,
            1 << 20,
        )
        .unwrap();
        let Message::DesiredStatus(d) = m else {
            panic!()
        };
        assert_eq!(d.instances[0].num_instances, 0);
        assert_eq!(d.instances[0].subject.id, "");
        assert!(d.items.is_empty());
    }

    #[test]
    fn bad_messages_are_refused_with_their_reason() {
        let max = 1000;
        assert_eq!(
            parse(&" ".repeat(1001), max),
            Err(ProtocolError::TooLarge { size: 1001, max })
        );
        assert!(matches!(parse("{", max), Err(ProtocolError::NotJson(_))));
        assert_eq!(parse("{}", max), Err(ProtocolError::NoType));
        assert_eq!(
            parse(r#"{"messageType": "reboot"}"#, max),
            Err(ProtocolError::UnknownType("reboot".into()))
        );
        let e = parse(r#"{"messageType": "desiredStatus", "items": 5}"#, max).unwrap_err();
        assert!(
            matches!(
                &e,
                ProtocolError::Shape {
                    kind: "desiredStatus",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse(
            r#"{"messageType": "desiredStatus", "instances": [{"numInstances": "many"}]}"#,
            max,
        )
        .unwrap_err();
        assert!(e.to_string().contains("invalid type"), "{e}");
    }
}
