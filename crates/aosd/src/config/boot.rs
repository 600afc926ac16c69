//! `[runtimes.boot]`: the A/B boot slots, the recovery entry, the EFI variables, the health
//! gate of an update, and the simulated machine for demos and tests.

use std::path::PathBuf;

use aos_slots::health::HealthConfig;
use serde::{Deserialize, Serialize};

/// The boot runtime.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BootSection {
    pub enabled: bool,
    /// Always one (the node's boot slots); kept for the Node's runtime list.
    pub max_instances: u64,
    /// Where the EFI variables are.
    pub efivars: PathBuf,
    /// The partitions of slots A and B, and of the recovery entry (empty: none). With neither
    /// slot named, they are found from the partition the machine booted: its GPT name is
    /// `<name>_a` or `<name>_b`, the other slot is named with the other letter, recovery
    /// `<name>_recovery`.
    pub slot_a: PathBuf,
    pub slot_b: PathBuf,
    pub recovery: PathBuf,
    /// The loader each boot entry starts, on the slot's partition.
    pub loader: String,
    /// The file in a slot's filesystem whose first line is its version.
    pub version_file: String,
    /// Boots into an update tried before it is given up.
    pub max_attempts: u32,
    /// What must pass, for how long, before an update is kept.
    pub health: HealthConfig,
    /// A machine in a box instead of this one: simulated firmware, slot files under the data
    /// directory, reboots that do not reboot. For demos and tests.
    pub simulate: bool,
}

impl Default for BootSection {
    fn default() -> Self {
        BootSection {
            enabled: false,
            max_instances: 0,
            efivars: PathBuf::from("/sys/firmware/efi/efivars"),
            slot_a: PathBuf::new(),
            slot_b: PathBuf::new(),
            recovery: PathBuf::new(),
            loader: "\\EFI\\BOOT\\BOOTX64.EFI".into(),
            version_file: "etc/aos/version".into(),
            max_attempts: 3,
            health: HealthConfig::default(),
            simulate: false,
        }
    }
}

impl BootSection {
    /// Checks what the types cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if !self.enabled || self.simulate {
            return Ok(());
        }
        if self.slot_a.as_os_str().is_empty() != self.slot_b.as_os_str().is_empty() {
            anyhow::bail!(
                "runtimes.boot: name both slot_a and slot_b, or neither (found from the booted partition)"
            );
        }
        if self.max_attempts == 0 {
            anyhow::bail!("runtimes.boot.max_attempts must be at least 1");
        }
        Ok(())
    }
}
