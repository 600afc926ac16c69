//! What an instance is run with, read from its Item's status (the image config and the item
//! config summary) and from the node's resources file; and the quotas of REFERENCE.md computed
//! from them.

use std::path::Path;

use serde::Deserialize;

use crate::InstanceError;

pub use aos_api::itemconfig::{ItemConfig, Quotas, RequestedResource, RunConfig, RunParameters};

/// The cgroup and rlimit figures of an instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// CFS quota for a period of 100 000 µs.
    pub cpu_quota: Option<i64>,
    pub memory: Option<i64>,
    pub pids: Option<i64>,
    pub nofile: Option<u64>,
    pub tmp_size: u64,
}

pub const CPU_PERIOD: u64 = 100_000;

/// REFERENCE.md's quotas: cpu from DMIPS over the node's, memory, pids (also RLIMIT_NPROC),
/// nofile, tmpfs size. `skipResourceLimits` keeps only the tmpfs size.
pub fn limits(item: &ItemConfig, node_dmips: u64, cores: u64, default_tmp: u64) -> Limits {
    let q = &item.quotas;
    let tmp_size = q.tmp_limit.unwrap_or(default_tmp);
    if item.skip_resource_limits {
        return Limits {
            tmp_size,
            ..Limits::default()
        };
    }
    // Beyond i64 the kernel reads a limit as "none": such values are refused when the item is
    // resolved; here they saturate rather than wrap.
    let kernel = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let cpu_quota = q.cpu_dmips_limit.filter(|_| node_dmips > 0).map(|d| {
        let quota = (d as u128 * CPU_PERIOD as u128 * cores.max(1) as u128) / node_dmips as u128;
        i64::try_from(quota).unwrap_or(i64::MAX).max(1000)
    });
    Limits {
        cpu_quota,
        memory: q.ram_limit.map(kernel),
        pids: q.pids_limit.map(kernel),
        nofile: q.no_file_limit,
        tmp_size,
    }
}

/// A device of a node resource.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceDevice {
    pub host_path: String,
    #[serde(default)]
    pub container_path: Option<String>,
    /// `r`, `w`, `m` letters; default `rwm`.
    #[serde(default)]
    pub permissions: Option<String>,
}

#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceMount {
    pub source: String,
    pub destination: String,
    #[serde(default)]
    pub options: Vec<String>,
}

/// One resource the node offers to items that request it by name.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeResource {
    pub name: String,
    #[serde(default)]
    pub devices: Vec<ResourceDevice>,
    #[serde(default)]
    pub mounts: Vec<ResourceMount>,
    #[serde(default)]
    pub env: Vec<String>,
    /// Host group names or numbers the instance joins.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Extra `/etc/hosts` lines.
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// The node resources file: `{"resources": [...]}` in JSON.
#[derive(Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NodeResources {
    #[serde(default)]
    /// Every resource the node declares.
    pub resources: Vec<NodeResource>,
}

impl NodeResources {
    /// Reads the file; a missing file declares nothing.
    pub fn load(path: &Path) -> Result<NodeResources, InstanceError> {
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                InstanceError::Config(format!("node resources file {}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(NodeResources::default()),
            Err(e) => Err(InstanceError::Io {
                what: format!("failed to read {}", path.display()),
                source: e,
            }),
        }
    }

    /// The resources an item requests, or the first name the node does not declare.
    pub fn resolve(&self, wanted: &[RequestedResource]) -> Result<Vec<NodeResource>, String> {
        wanted
            .iter()
            .map(|w| {
                self.resources
                    .iter()
                    .find(|r| r.name == w.name)
                    .cloned()
                    .ok_or_else(|| w.name.clone())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quota_follows_the_reference_formula_with_its_minimum() {
        let mut item = ItemConfig::default();
        item.quotas.cpu_dmips_limit = Some(5000);
        item.quotas.ram_limit = Some(64 << 20);
        item.quotas.pids_limit = Some(50);
        let l = limits(&item, 20000, 4, 1 << 20);
        assert_eq!(l.cpu_quota, Some(5000 * 100_000 * 4 / 20000));
        assert_eq!(l.memory, Some(64 << 20));
        assert_eq!(l.pids, Some(50));
        assert_eq!(l.tmp_size, 1 << 20);
        item.quotas.cpu_dmips_limit = Some(1);
        assert_eq!(limits(&item, 20000, 1, 0).cpu_quota, Some(1000));
        item.skip_resource_limits = true;
        let l = limits(&item, 20000, 4, 7);
        assert_eq!(
            (l.cpu_quota, l.memory, l.pids, l.tmp_size),
            (None, None, None, 7)
        );
    }

    #[test]
    fn the_item_status_config_gives_args_and_rootfs_mode() {
        let v = serde_json::json!({
            "image": {"entrypoint": ["/bin/sh", "-c"], "cmd": ["echo hi"], "env": ["A=1"], "workingDir": "/srv"},
            "item": {"rootfs": "own", "quotas": {"ramLimit": 1024}, "runParameters": {"startBurst": 2, "restartInterval": "2s"}}
        });
        let c: RunConfig = serde_json::from_value(v).unwrap();
        assert_eq!(c.args(), ["/bin/sh", "-c", "echo hi"]);
        assert!(!c.uses_host_rootfs());
        assert_eq!(c.item().run_parameters.start_burst, Some(2));
        assert_eq!(c.item().quotas.ram_limit, Some(1024));
        let bare: RunConfig =
            serde_json::from_value(serde_json::json!({"image": {}, "item": null})).unwrap();
        assert!(bare.uses_host_rootfs());
    }

    #[test]
    fn requested_resources_must_be_declared_by_the_node() {
        let node: NodeResources = serde_json::from_value(serde_json::json!({
            "resources": [{"name": "camera", "devices": [{"hostPath": "/dev/null"}], "groups": ["video"]}]
        }))
        .unwrap();
        let ok = node.resolve(&[RequestedResource {
            name: "camera".into(),
            mode: "rw".into(),
        }]);
        assert_eq!(ok.unwrap()[0].groups, ["video"]);
        let missing = node.resolve(&[RequestedResource {
            name: "gps".into(),
            mode: "r".into(),
        }]);
        assert_eq!(missing.unwrap_err(), "gps");
    }
}
