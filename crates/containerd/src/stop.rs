//! Stopping a task the way every caller wants it: SIGTERM, a grace to exit, then SIGKILL. Used
//! by the Instance controller for one instance and by aosd for all of them before a reboot.

use std::time::Duration;

use crate::{Containers, ContainersError};

/// How long a task gets to go after SIGKILL before the caller moves on.
const AFTER_KILL: Duration = Duration::from_secs(10);

/// Stops the running task of container `id`: SIGTERM, up to `grace` for it to exit, then
/// SIGKILL. Returns whether it ended within the grace (true when nothing ran).
pub async fn stop_task(
    c: &dyn Containers,
    id: &str,
    grace: Duration,
) -> Result<bool, ContainersError> {
    let running = c
        .inspect(id)
        .await?
        .is_some_and(|info| info.task.is_some_and(|t| t.running));
    if !running {
        return Ok(true);
    }
    c.kill(id, 15).await?;
    if tokio::time::timeout(grace, c.wait(id)).await.is_ok() {
        return Ok(true);
    }
    tracing::info!(
        container = id,
        grace_ms = grace.as_millis() as u64,
        "no exit after SIGTERM: SIGKILL"
    );
    c.kill(id, 9).await?;
    let _ = tokio::time::timeout(AFTER_KILL, c.wait(id)).await;
    Ok(false)
}
