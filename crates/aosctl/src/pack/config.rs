//! The service folder's `meta/config.yaml` (publisher, build platforms, configuration): the
//! format `aosctl pack` reads, unknown keys refused.

use std::collections::BTreeMap;

use aos_api::AosDuration;
use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default)]
    pub publisher: Publisher,
    #[serde(default)]
    pub build: Build,
    pub configuration: Configuration,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Publisher {
    #[serde(default)]
    pub author: String,
    #[serde(default)]
    pub company: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    #[serde(default = "linux")]
    pub os: String,
    /// OCI architecture (`amd64`, `arm64`, `arm`).
    #[serde(default = "amd64")]
    pub arch: String,
}

fn linux() -> String {
    "linux".into()
}

fn amd64() -> String {
    "amd64".into()
}

impl Default for Build {
    fn default() -> Self {
        Build {
            os: linux(),
            arch: amd64(),
        }
    }
}

/// A command as one string (split on spaces) or a list.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum Command {
    Line(String),
    Args(Vec<String>),
}

impl Default for Command {
    fn default() -> Self {
        Command::Args(Vec::new())
    }
}

impl Command {
    pub fn args(&self) -> Vec<String> {
        match self {
            Command::Line(l) => l.split_whitespace().map(str::to_string).collect(),
            Command::Args(a) => a.clone(),
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quotas {
    #[serde(
        default,
        rename = "cpuDMIPSLimit",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_dmips_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_file_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmp_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_speed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_speed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_limit: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestedResources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ram: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<u64>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<AosDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_burst: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_interval: Option<AosDuration>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResource {
    pub name: String,
    #[serde(default = "rw")]
    pub mode: String,
}

fn rw() -> String {
    "rw".into()
}

/// `host`: the host's `/` is the base layer (AosEdge default); `own`: the image brings its OS.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Rootfs {
    #[default]
    Host,
    Own,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Configuration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    pub cmd: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_connections: Vec<String>,
    #[serde(default)]
    pub quotas: Quotas,
    #[serde(default)]
    pub requested_resources: RequestedResources,
    #[serde(default)]
    pub run_parameters: RunParameters,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    #[serde(
        default,
        rename = "offlineTTL",
        skip_serializing_if = "Option::is_none"
    )]
    pub offline_ttl: Option<AosDuration>,
    #[serde(default)]
    pub skip_resource_limits: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancing_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtimes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<NodeResource>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub alert_rules: serde_json::Value,
    #[serde(default)]
    pub rootfs: Rootfs,
    /// `runtime-default` (the default) or `unconfined` (where the node allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    /// `isolated` (the default) or `host` (where the node allows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
}
