//! What a running instance's status says of it besides its task: its usage in the units of
//! REFERENCE.md (CPU in percent and DMIPS, bytes), the limits it is over, and the Ready
//! condition its probes give.

use aos_api::condition::{self as c, reason as r};
use aos_api::{InstanceStatus, InstanceUsage};
use chrono::{DateTime, Utc};

use crate::config::Quotas;
use crate::observe::Observed;
use crate::probes::ProbeState;
use crate::recipe::Recipe;

/// A usage entry from the observed reading (none when there is no newer one than the status).
pub fn sample(o: &Observed, recipe: &Recipe) -> Option<InstanceUsage> {
    Some(o.sample?.usage(recipe.node_dmips / recipe.cores.max(1)))
}

/// The Ready condition of a running task: its status, reason and message.
pub fn readiness(has_probes: bool, probes: Option<&ProbeState>) -> (bool, &'static str, String) {
    let Some(st) = probes.filter(|_| has_probes) else {
        return (true, r::TASK_RUNNING, String::new());
    };
    match (st.started, st.ready) {
        (true, true) => (true, r::PROBES_PASSED, String::new()),
        (false, _) => (
            false,
            r::STARTUP_PENDING,
            "the startup probe has not passed yet".into(),
        ),
        (true, false) => (false, r::READINESS_FAILED, st.message.clone()),
    }
}

/// The `*LimitExceeded` conditions of the limits the item sets.
pub fn limits(s: &mut InstanceStatus, u: &InstanceUsage, q: &Quotas, now: DateTime<Utc>) {
    for (t, used, limit) in [
        (c::STATE_LIMIT_EXCEEDED, u.state_bytes, q.state_limit),
        (c::STORAGE_LIMIT_EXCEEDED, u.storage_bytes, q.storage_limit),
        (c::UPLOAD_LIMIT_EXCEEDED, u.tx_bytes, q.upload_limit),
        (c::DOWNLOAD_LIMIT_EXCEEDED, u.rx_bytes, q.download_limit),
    ] {
        if let Some(limit) = limit {
            let over = used > limit;
            let msg = format!("{used} bytes used of {limit}");
            let reason = if over { r::OVER_LIMIT } else { r::WITHIN_LIMIT };
            super::cond(s, t, over, reason, &msg, now);
        }
    }
}
