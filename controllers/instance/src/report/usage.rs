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

/// A usage entry from the observed sample (none when no sample was due).
pub fn sample(o: &Observed, recipe: &Recipe, now: DateTime<Utc>) -> Option<InstanceUsage> {
    let s = o.sample?;
    let prev = o.obj.status.usage.as_ref();
    let cpu = s.cpu_time_ns;
    let cpu_percent = match prev {
        Some(p) if cpu >= p.cpu_time_ns => {
            let wall = (now - p.updated_at).num_nanoseconds().unwrap_or(0).max(1) as f64;
            ((cpu - p.cpu_time_ns) as f64 / wall * 1000.0).round() / 10.0
        }
        _ => 0.0,
    };
    let per_core = recipe.node_dmips / recipe.cores.max(1);
    let (rx_bytes, tx_bytes) = o.counters.unwrap_or_default();
    Some(InstanceUsage {
        rx_bytes,
        tx_bytes,
        cpu_percent,
        cpu_dmips: (cpu_percent / 100.0 * per_core as f64) as u64,
        ram_bytes: s.memory_bytes,
        state_bytes: s.state_bytes,
        storage_bytes: s.storage_bytes,
        updated_at: now,
        cpu_time_ns: cpu,
    })
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
