//! Node: one per node; the agent fills its status with host facts, runtimes and usage.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{impl_status, AosDuration, CommonStatus, FieldError, Spec};

/// What a user may set on a node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSpec {
    /// Labels the scheduler may match against.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Share of each resource (percent) that instances may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_ratios: Option<ResourceRatios>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_rules: Option<AlertRules>,
    /// Placement fills nodes of higher priority first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i64,
}

fn is_zero(p: &i64) -> bool {
    *p == 0
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRatios {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<f64>,
}

/// `{minTimeout, minThreshold, maxThreshold}`: raise at max for minTimeout, fall below min.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRule {
    #[serde(default)]
    pub min_timeout: AosDuration,
    pub min_threshold: f64,
    pub max_threshold: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionAlertRule {
    pub name: String,
    #[serde(flatten)]
    pub rule: AlertRule,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<AlertRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<AlertRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<AlertRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<AlertRule>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionAlertRule>,
}

/// The three runtime types.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeType {
    #[default]
    Container,
    Boot,
    Rootfs,
}

impl RuntimeType {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuntimeType::Container => "container",
            RuntimeType::Boot => "boot",
            RuntimeType::Rootfs => "rootfs",
        }
    }
}

/// A runtime as it registers with the cloud.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    /// UUID v3 of `type-nodeId`.
    pub id: String,
    #[serde(rename = "type")]
    pub type_: RuntimeType,
    pub arch: String,
    pub os: String,
    pub max_instances: u64,
    pub dmips: u64,
    pub ram: u64,
}

/// Where the node's DMIPS figure comes from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DmipsSource {
    /// `node.dmips` of the config.
    #[default]
    Configured,
    /// The clock of `/proc/cpuinfo` times a typical DMIPS/MHz rate.
    Estimated,
    /// The clock measured by a timed loop (where `/proc/cpuinfo` has none) times that rate.
    Calibrated,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionUsage {
    pub name: String,
    pub path: String,
    pub total_size: u64,
    pub used_size: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeUsage {
    pub cpu_percent: f64,
    pub cpu_dmips: u64,
    pub ram_used: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionUsage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub arch: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    #[serde(default)]
    pub cpus: u64,
    #[serde(default)]
    pub dmips: u64,
    #[serde(default)]
    pub dmips_source: DmipsSource,
    #[serde(default)]
    pub total_ram: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<RuntimeInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<NodeUsage>,
    /// When the node's agent last wrote this status (every `node.usage_interval`). The other
    /// nodes of a unit mark a node whose heartbeat stops `Ready=Unknown` after `node.lost_after`
    /// (timed by their own clocks, from when they saw it last change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_time: Option<DateTime<Utc>>,
    /// The IPv4 address the other nodes of a unit reach this node at (`node.address`, or the
    /// source address of its default route): their routes to its part of each network go
    /// through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}
impl_status!(NodeStatus);

fn check_rule(path: &str, rule: &AlertRule, errors: &mut Vec<FieldError>) {
    if rule.min_threshold > rule.max_threshold {
        errors.push(FieldError::new(
            format!("{path}.minThreshold"),
            "must not be greater than maxThreshold",
        ));
    }
}

impl AlertRules {
    /// The rules of the named parameters (`cpu`, `ram`, `download`, `upload`) that are set;
    /// the partitions' rules are in `partitions`.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, &AlertRule)> {
        [
            ("cpu", &self.cpu),
            ("ram", &self.ram),
            ("download", &self.download),
            ("upload", &self.upload),
        ]
        .into_iter()
        .filter_map(|(name, rule)| Some((name, rule.as_ref()?)))
    }

    /// Checks each rule's thresholds; paths start at `path`.
    pub fn check(&self, path: &str, errors: &mut Vec<FieldError>) {
        for (name, rule) in self.named() {
            check_rule(&format!("{path}.{name}"), rule, errors);
        }
        for (i, p) in self.partitions.iter().enumerate() {
            check_rule(&format!("{path}.partitions[{i}]"), &p.rule, errors);
        }
    }
}

impl Spec for NodeSpec {
    const KIND: &'static str = "Node";
    type Status = NodeStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        for (k, v) in &self.labels {
            crate::validate::check_label("spec.labels", k, v, errors);
        }
        if let Some(r) = &self.resource_ratios {
            for (name, v) in [
                ("cpu", r.cpu),
                ("ram", r.ram),
                ("storage", r.storage),
                ("state", r.state),
            ] {
                if v.is_some_and(|v| !(0.0..=100.0).contains(&v)) {
                    errors.push(FieldError::new(
                        format!("spec.resourceRatios.{name}"),
                        "must be a percentage between 0 and 100",
                    ));
                }
            }
        }
        if let Some(a) = &self.alert_rules {
            a.check("spec.alertRules", errors);
        }
    }
}
