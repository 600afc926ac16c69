//! The item config (`application/vnd.aos.item.config.v1+json`): how a service wants to be run.
//! `aosctl pack` writes it, the Item controller checks it when it resolves an image (and keeps
//! it in the Item's `status.config.item`), and the Instance and Network controllers read it
//! through this type. Fields aosd does not act on are kept as they came; unknown fields are
//! ignored (configs from a cloud carry more).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AosDuration, FieldError};

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct Quotas {
    #[serde(rename = "cpuDMIPSLimit", skip_serializing_if = "Option::is_none")]
    pub cpu_dmips_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ram_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_file_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmp_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_limit: Option<u64>,
    /// Bytes per second the instance may send.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_speed: Option<u64>,
    /// Bytes per second the instance may receive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_speed: Option<u64>,
    /// Bytes sent since the instance joined its network before `UploadLimitExceeded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub download_limit: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct RunParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<AosDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_burst: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_interval: Option<AosDuration>,
}

/// A node resource the item asks for, and how (`r`/`ro` read only, `rw` read-write).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct RequestedResource {
    pub name: String,
    #[serde(default = "rw")]
    pub mode: String,
}

fn rw() -> String {
    "rw".into()
}

impl RequestedResource {
    /// Whether the item may only read the resource.
    pub fn read_only(&self) -> bool {
        matches!(self.mode.as_str(), "r" | "ro")
    }
}

/// The item config fields aosd acts on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ItemConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub skip_resource_limits: bool,
    pub quotas: Quotas,
    pub run_parameters: RunParameters,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctl: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<RequestedResource>,
    /// `host` (default: the host's `/` under the image) or `own`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Ports others may reach: `port[-port][/tcp|udp]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exposed_ports: Vec<String>,
    /// `itemId/port[-port][/proto]` this item may reach (the keys; values are unused).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub allowed_connections: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "offlineTTL", skip_serializing_if = "Option::is_none")]
    pub offline_ttl: Option<AosDuration>,
    /// The system-call filter: `runtime-default` (default) or `unconfined`, which only a node
    /// that allows it (`runtimes.container.allow_unconfined`) runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seccomp: Option<String>,
    /// `host` runs the instance in the host's network namespace, which only a node that
    /// allows it (`runtimes.container.allow_host_network`) does; otherwise every instance has
    /// its own (isolated unless it joins a Network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Alert rules of its instances: `cpu` and `ram` in percent of the instance's quota (of the
    /// node's total without one), partitions `state` and `storage` in percent of their quotas,
    /// `download` and `upload` in bytes since the instance joined its network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_rules: Option<crate::AlertRules>,
    /// Every other field of the document (author, permissions, …), kept as it came.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The image config fields that shape the process.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageRun {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub os: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
}

/// What an instance is run with, as the Item controller records it in the Item's
/// `status.config`: the image config's process fields and the item config.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(default)]
pub struct RunConfig {
    pub image: ImageRun,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<ItemConfig>,
}

impl RunConfig {
    /// The item config, or the defaults of an image without one.
    pub fn item(&self) -> ItemConfig {
        self.item.clone().unwrap_or_default()
    }

    /// Entrypoint then cmd.
    pub fn args(&self) -> Vec<String> {
        let mut a = self.image.entrypoint.clone().unwrap_or_default();
        a.extend(self.image.cmd.clone().unwrap_or_default());
        a
    }

    /// Whether the host's `/` is the base layer (`rootfs: host`, the default).
    pub fn uses_host_rootfs(&self) -> bool {
        self.item.as_ref().and_then(|i| i.rootfs.as_deref()) != Some("own")
    }
}

/// Sysctls a container may set because they live in its own namespaces (as runc allows
/// them): IPC (`kernel.msg*`, `kernel.sem`, `kernel.shm*`, `fs.mqueue.*`), UTS
/// (`kernel.domainname`) and network (`net.*`, for instances with a network namespace).
pub fn namespaced_sysctl(key: &str) -> bool {
    matches!(
        key,
        "kernel.msgmax"
            | "kernel.msgmnb"
            | "kernel.msgmni"
            | "kernel.sem"
            | "kernel.shmall"
            | "kernel.shmmax"
            | "kernel.shmmni"
            | "kernel.shm_rmid_forced"
            | "kernel.domainname"
    ) || key.starts_with("fs.mqueue.")
        || key.starts_with("net.")
}

/// A host name: letters, digits and `-`, 1 to 63 characters, not starting or ending with `-`.
pub fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !h.starts_with('-')
        && !h.ends_with('-')
}

impl ItemConfig {
    /// Reads an item config document.
    pub fn parse(v: &serde_json::Value) -> Result<ItemConfig, FieldError> {
        serde_json::from_value(v.clone()).map_err(|e| FieldError::new("itemConfig", e.to_string()))
    }

    /// What the runtime would refuse only when it starts the task (or get wrong): checked when
    /// the item is packed and when its image is resolved. Paths are those of the item config.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let q = &self.quotas;
        for (name, v) in [
            ("quotas.cpuDMIPSLimit", q.cpu_dmips_limit),
            ("quotas.ramLimit", q.ram_limit),
            ("quotas.pidsLimit", q.pids_limit),
            ("quotas.noFileLimit", q.no_file_limit),
            ("quotas.tmpLimit", q.tmp_limit),
            ("quotas.stateLimit", q.state_limit),
            ("quotas.storageLimit", q.storage_limit),
        ] {
            match v {
                Some(0) if name != "quotas.stateLimit" && name != "quotas.storageLimit" => {
                    errors.push(FieldError::new(name, "must be at least 1"))
                }
                Some(v) if v > i64::MAX as u64 => errors.push(FieldError::new(
                    name,
                    format!("{v} is larger than the kernel takes ({})", i64::MAX),
                )),
                _ => {}
            }
        }
        if let Some(a) = &self.alert_rules {
            a.check("alertRules", &mut errors);
        }
        for key in self.sysctl.keys() {
            if !namespaced_sysctl(key) {
                errors.push(FieldError::new(
                    format!("sysctl.{key}"),
                    "is not namespaced: it would change the whole node (allowed: kernel.msg*, kernel.sem, kernel.shm*, kernel.domainname, fs.mqueue.*, net.*)",
                ));
            }
        }
        if let Some(h) = &self.hostname {
            if !valid_hostname(h) {
                errors.push(FieldError::new(
                    "hostname",
                    "must be 1-63 letters, digits or '-', not starting or ending with '-'",
                ));
            }
        }
        for (i, r) in self.resources.iter().enumerate() {
            if !matches!(r.mode.as_str(), "r" | "ro" | "rw" | "rwm") {
                errors.push(FieldError::new(
                    format!("resources[{i}].mode"),
                    format!("{:?} is not r, ro or rw", r.mode),
                ));
            }
        }
        for (field, v, allowed) in [
            ("rootfs", &self.rootfs, &["host", "own"][..]),
            (
                "seccomp",
                &self.seccomp,
                &["runtime-default", "unconfined"][..],
            ),
            ("networkMode", &self.network_mode, &["isolated", "host"][..]),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !allowed.contains(v)) {
                errors.push(FieldError::new(
                    field,
                    format!("{v:?} is not one of {}", allowed.join(", ")),
                ));
            }
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_the_kernel_cannot_take_and_host_wide_sysctls_are_refused_by_field() {
        let c = ItemConfig::parse(&serde_json::json!({
            "quotas": {"ramLimit": u64::MAX, "noFileLimit": 0, "pidsLimit": 10},
            "sysctl": {"kernel.panic": "1", "net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"},
            "hostname": "-bad",
            "resources": [{"name": "cam", "mode": "x"}],
            "seccomp": "off",
            "alertRules": {"ram": {"minTimeout": "1s", "minThreshold": 90, "maxThreshold": 80}},
            "unknownField": true
        }))
        .unwrap();
        let paths: Vec<String> = c.validate().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "quotas.ramLimit",
                "quotas.noFileLimit",
                "alertRules.ram.minThreshold",
                "sysctl.kernel.panic",
                "hostname",
                "resources[0].mode",
                "seccomp"
            ]
        );
    }

    #[test]
    fn a_plain_config_is_valid_and_resources_default_to_read_write() {
        let c = ItemConfig::parse(&serde_json::json!({
            "quotas": {"ramLimit": 1024}, "resources": [{"name": "cam"}, {"name": "gps", "mode": "ro"}]
        }))
        .unwrap();
        assert!(c.validate().is_empty());
        assert!(!c.resources[0].read_only());
        assert!(c.resources[1].read_only());
    }

    #[test]
    fn alert_rules_are_read_typed_and_a_misspelt_one_is_refused() {
        let c = ItemConfig::parse(&serde_json::json!({
            "alertRules": {"ram": {"minTimeout": "2s", "minThreshold": 50, "maxThreshold": 70},
                           "partitions": [{"name": "state", "minThreshold": 1, "maxThreshold": 2}]}
        }))
        .unwrap();
        let rules = c.alert_rules.unwrap();
        assert_eq!(rules.ram.unwrap().min_timeout.0.as_secs(), 2);
        assert_eq!(rules.partitions[0].name, "state");
        let e = ItemConfig::parse(&serde_json::json!({"alertRules": {"rma": {}}})).unwrap_err();
        assert!(e.message.contains("rma"), "{e}");
    }
}
