//! Instance: one running instance of an item version for a subject, on one runtime.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::check_not_empty;
use crate::{impl_status, AosDuration, CommonStatus, FieldError, RuntimeType, Spec};

/// One environment override.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
    /// The override expires after this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<DateTime<Utc>>,
}

/// The reference's run parameters: restart after `restartInterval`; at most `startBurst`
/// starts within `startInterval`, then failed.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestartPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_interval: Option<AosDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<AosDuration>,
    /// Time between SIGTERM and SIGKILL on stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace: Option<AosDuration>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceNetwork {
    pub network_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connections: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceSpec {
    pub item_id: String,
    pub version: String,
    pub subject_id: String,
    #[serde(default)]
    pub index: u64,
    pub runtime: RuntimeType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<InstanceNetwork>,
    #[serde(default)]
    pub priority: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
}

/// Exactly the reference's states.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstanceState {
    #[default]
    Activating,
    Active,
    Inactive,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastExit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    /// UUID v3 of `itemId:subjectId:index`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub instance_id: String,
    #[serde(default)]
    pub state: InstanceState,
    #[serde(default)]
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<LastExit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_version: Option<String>,
}
impl_status!(InstanceStatus);

impl Spec for InstanceSpec {
    const KIND: &'static str = "Instance";
    type Status = InstanceStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_not_empty("spec.itemId", &self.item_id, errors);
        check_not_empty("spec.version", &self.version, errors);
        check_not_empty("spec.subjectId", &self.subject_id, errors);
        for (i, e) in self.env.iter().enumerate() {
            let ok = !e.name.is_empty()
                && !e.name.contains('=')
                && !e.name.starts_with(|c: char| c.is_ascii_digit());
            if !ok {
                errors.push(FieldError::new(
                    format!("spec.env[{i}].name"),
                    format!("{:?} is not a valid environment variable name", e.name),
                ));
            }
        }
        if let Some(n) = &self.network {
            check_not_empty("spec.network.networkId", &n.network_id, errors);
            for (i, p) in n.exposed_ports.iter().enumerate() {
                if let Err(e) = crate::kinds::network::parse_port_spec(p) {
                    errors.push(FieldError::new(
                        format!("spec.network.exposedPorts[{i}]"),
                        e,
                    ));
                }
            }
            for (i, c) in n.allowed_connections.iter().enumerate() {
                let ok = c.split_once('/').is_some_and(|(item, ports)| {
                    !item.is_empty() && crate::kinds::network::parse_port_spec(ports).is_ok()
                });
                if !ok {
                    errors.push(FieldError::new(
                        format!("spec.network.allowedConnections[{i}]"),
                        format!("{c:?} must be itemId/port[-port][/tcp|udp]"),
                    ));
                }
            }
        }
        if self.runtime != RuntimeType::Container && self.index != 0 {
            errors.push(FieldError::new(
                "spec.index",
                "boot and rootfs runtimes run a single instance: index must be 0",
            ));
        }
    }
}
