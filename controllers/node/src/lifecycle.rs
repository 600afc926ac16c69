//! The other nodes of a unit, seen from this one: a node whose heartbeat
//! (`status.heartbeatTime`) has not changed for `lost_after`, timed by this node's own clock
//! from when it last saw it change (so the nodes' clocks need not agree), is marked
//! `Ready=Unknown` with reason `HeartbeatLost`. Nothing of it is stopped or evicted: a node cut
//! off from the store keeps running what it runs. Every node does this; the second mark of the
//! same node changes nothing. The node's own next heartbeat makes it Ready again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aos_api::condition::{reason, READY};
use aos_api::{ConditionStatus, NodeSpec, Object};
use aos_reconcile::{Action, Context};
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::NodeError;

/// A node's last heartbeat as seen here, and when this node saw it change.
type Seen = (Option<DateTime<Utc>>, Instant);

/// The last heartbeat seen of each other node.
#[derive(Default)]
pub struct Peers {
    seen: Mutex<HashMap<String, Seen>>,
}

impl Peers {
    /// How long the heartbeat of `name` has been unchanged, as this node saw it.
    pub fn silent_for(&self, name: &str, heartbeat: Option<DateTime<Utc>>) -> Duration {
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = seen.entry(name.to_string()).or_insert((heartbeat, now));
        if entry.0 != heartbeat {
            *entry = (heartbeat, now);
        }
        now - entry.1
    }

    pub fn forget(&self, name: &str) {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// Checks another node's heartbeat; marks it lost once it has been silent for `lost_after`.
pub async fn check_peer(
    peers: &Peers,
    lost_after: Duration,
    obj: &Object<NodeSpec>,
    ctx: &Context<NodeSpec>,
) -> Result<Action, NodeError> {
    let name = &obj.metadata.name;
    let silent = peers.silent_for(name, obj.status.heartbeat_time);
    if silent < lost_after {
        return Ok(Action::Requeue(lost_after - silent));
    }
    let lost = obj
        .status
        .common
        .condition(READY)
        .is_some_and(|c| c.status == ConditionStatus::Unknown);
    if !lost {
        let last = obj
            .status
            .heartbeat_time
            .map_or_else(|| "never".to_string(), |t| t.to_rfc3339());
        let message = format!(
            "no heartbeat for {}s (lost after {}s); last heartbeat: {last}",
            silent.as_secs(),
            lost_after.as_secs()
        );
        tracing::warn!(node = %name, silent_s = silent.as_secs(), "a node of the unit stopped its heartbeat");
        ctx.api
            .update_status(name, |s| {
                s.common.set_condition(
                    READY,
                    ConditionStatus::Unknown,
                    reason::HEARTBEAT_LOST,
                    &message,
                    Utc::now(),
                );
            })
            .await?;
    }
    // Its next heartbeat wakes this check again.
    Ok(Action::AwaitChange)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn silence_is_timed_from_when_the_heartbeat_last_changed_here() {
        let peers = Peers::default();
        let t0 = Some(Utc::now());
        assert_eq!(peers.silent_for("b", t0), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(peers.silent_for("b", t0), Duration::from_secs(30));
        // A heartbeat from a clock far behind ours still counts: it changed.
        let behind = Some(Utc::now() - chrono::Duration::hours(5));
        assert_eq!(peers.silent_for("b", behind), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(peers.silent_for("b", behind), Duration::from_secs(10));
        peers.forget("b");
        assert_eq!(peers.silent_for("b", behind), Duration::ZERO);
    }
}
