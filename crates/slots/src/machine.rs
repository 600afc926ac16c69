//! The machine an OS update reboots: which boot this is (the kernel's boot id, new at every
//! boot), the time, and the reboot itself (systemd's where systemd runs, else the services are
//! stopped by the [`BeforeReboot`] hook, then `reboot(2)` after a sync). The firmware simulator of the tests implements the same port, so that a "reboot"
//! there boots the simulated firmware and restarts the agent.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::SlotsError;

/// See the module documentation.
#[async_trait::async_trait]
pub trait Machine: Send + Sync {
    /// An id that changes at every boot and only then.
    fn boot_id(&self) -> Result<String, SlotsError>;
    /// Now.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    /// Reboots (on a real machine, does not return when it works).
    async fn reboot(&self, why: &str) -> Result<(), SlotsError>;
}

/// What runs before this machine reboots itself where no systemd stops the services first:
/// it stops what would otherwise be cut off in the middle of a write.
#[async_trait::async_trait]
pub trait BeforeReboot: Send + Sync {
    /// Stops what it owns; errors are its own to log (the reboot goes on).
    async fn before_reboot(&self);
}

/// This machine.
#[derive(Clone, Default)]
pub struct RealMachine {
    before: Option<Arc<dyn BeforeReboot>>,
}

impl RealMachine {
    /// This machine, running `before` ahead of a reboot it makes itself.
    pub fn new(before: Option<Arc<dyn BeforeReboot>>) -> RealMachine {
        RealMachine { before }
    }
}

#[async_trait::async_trait]
impl Machine for RealMachine {
    fn boot_id(&self) -> Result<String, SlotsError> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .map_err(|source| SlotsError::Io {
                what: "failed to read the boot id".into(),
                source,
            })
    }

    async fn reboot(&self, why: &str) -> Result<(), SlotsError> {
        tracing::warn!(reason = why, "rebooting");
        if std::path::Path::new("/run/systemd/system").exists() {
            let out = tokio::process::Command::new("systemctl")
                .args(["reboot", "--message", why])
                .output()
                .await
                .map_err(|source| SlotsError::Io {
                    what: "failed to run systemctl reboot".into(),
                    source,
                })?;
            if !out.status.success() {
                return Err(SlotsError::Command(format!(
                    "systemctl reboot: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return Ok(());
        }
        if let Some(before) = &self.before {
            before.before_reboot().await;
        }
        // Twice: a filesystem in an image on a loop device (an instance's state volume) is
        // written back into its backing file's page cache by the first pass, which the second
        // writes to the disk. Without it a state written a minute ago is lost in the reboot.
        nix::unistd::sync();
        nix::unistd::sync();
        nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT)
            .map(|_| ())
            .map_err(|e| SlotsError::Command(format!("reboot(2): {e}")))
    }
}
