//! The instances stopped before a reboot aosd makes itself (an OS update on a node without
//! systemd, where nothing else would stop them): the Instance controller first, so that it
//! restarts nothing, then every task with SIGTERM, and SIGKILL for those still running after the
//! grace. Their state volumes then hold what they wrote on the way out, and the reboot's sync
//! puts it on the disk. After the boot the controller starts them as after any boot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aos_containerd::Containers;
use aos_slots::machine::BeforeReboot;
use tokio_util::sync::CancellationToken;

/// See the module documentation.
pub struct InstanceStopper {
    /// The token the Instance (and Network) controllers run under.
    pub controllers: CancellationToken,
    /// The container runtime, once containerd answered.
    pub containers: OnceLock<Arc<dyn Containers>>,
    /// The Instance controller's environment, once it runs (the API's `Top` reads it).
    pub env: crate::instances::InstancesHandle,
    /// How long the tasks get to exit after SIGTERM.
    pub grace: Duration,
}

impl InstanceStopper {
    /// A stopper whose controllers stop with `shutdown` too.
    pub fn new(shutdown: &CancellationToken, grace: Duration) -> InstanceStopper {
        InstanceStopper {
            controllers: shutdown.child_token(),
            containers: OnceLock::new(),
            env: Default::default(),
            grace,
        }
    }
}

#[async_trait::async_trait]
impl BeforeReboot for InstanceStopper {
    async fn before_reboot(&self) {
        self.controllers.cancel();
        let Some(c) = self.containers.get() else {
            return;
        };
        let running: Vec<String> = match c.list().await {
            Ok(tasks) => tasks
                .into_iter()
                .filter(|t| t.task.as_ref().is_some_and(|s| s.running))
                .map(|t| t.id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the tasks to stop before the reboot");
                return;
            }
        };
        let stops = running
            .iter()
            .map(|id| aos_containerd::stop_task(c.as_ref(), id, self.grace));
        let mut clean = true;
        for (id, r) in running.iter().zip(futures::future::join_all(stops).await) {
            match r {
                Ok(in_grace) => clean &= in_grace,
                Err(e) => {
                    clean = false;
                    tracing::warn!(instance = %id, error = %e, "failed to stop before the reboot");
                }
            }
        }
        tracing::info!(
            tasks = running.len(),
            within_grace = clean,
            "stopped the instances before the reboot"
        );
    }
}
