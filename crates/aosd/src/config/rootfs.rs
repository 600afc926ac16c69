//! `[runtimes.rootfs]`: squashfs updates of the root filesystem through action files that the
//! boot side (`deploy/aos-rootfs`) acts on, and the health gate of a trial.

use std::path::PathBuf;

use aos_slots::health::HealthConfig;
use serde::{Deserialize, Serialize};

/// The rootfs runtime.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RootfsSection {
    pub enabled: bool,
    /// Always one (the node's root); kept for the Node's runtime list.
    pub max_instances: u64,
    /// The action files, the staged image and the records; must be outside the root being
    /// replaced (a data partition) and where the boot side looks.
    pub work_dir: PathBuf,
    /// The root the node runs.
    pub root_dir: PathBuf,
    /// The file in the root whose first line is its version.
    pub version_file: String,
    /// Paths a full update keeps.
    pub preserve: Vec<String>,
    /// Trial boots tried before the update is given up.
    pub max_attempts: u32,
    /// What must pass, for how long, before a trial is applied.
    pub health: HealthConfig,
}

impl Default for RootfsSection {
    fn default() -> Self {
        RootfsSection {
            enabled: false,
            max_instances: 0,
            work_dir: PathBuf::from("/var/lib/aosd-rootfs"),
            root_dir: PathBuf::from("/"),
            version_file: "etc/aos/version".into(),
            preserve: ["/etc/machine-id", "/etc/ssh/ssh_host_*", "/etc/hostname"]
                .map(String::from)
                .to_vec(),
            max_attempts: 2,
            health: HealthConfig::default(),
        }
    }
}

impl RootfsSection {
    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        if self.work_dir.starts_with(&self.root_dir) && self.root_dir != std::path::Path::new("/") {
            anyhow::bail!("runtimes.rootfs.work_dir must be outside root_dir");
        }
        if self.max_attempts == 0 {
            anyhow::bail!("runtimes.rootfs.max_attempts must be at least 1");
        }
        Ok(())
    }
}
