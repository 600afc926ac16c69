//! Leader election through a lease object in the store (kind `Lease`), the way Kubernetes'
//! controllers elect through the API server: the holder renews `spec.renewTime` every third of
//! the lease; another contender takes the lease over with a compare-and-swap once it has seen
//! the lease unchanged for a whole lease duration, timed by its own clock (so the nodes' clocks
//! need not agree). A holder that cannot renew for a lease duration stops acting as leader
//! before anyone may take over.

use std::sync::Arc;
use std::time::Duration;

use aos_api::{DynObject, ObjectMeta, Revision, API_VERSION};
use aos_store::{Backend, StoreError};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The kind of lease objects.
pub const LEASE_KIND: &str = "Lease";

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The lease's object name (one per elected role).
    pub name: String,
    /// This contender (the node's name).
    pub holder: String,
    pub duration: Duration,
}

fn lease(cfg: &LeaseConfig, rv: Revision) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: LEASE_KIND.into(),
        metadata: ObjectMeta {
            name: cfg.name.clone(),
            resource_version: rv,
            ..Default::default()
        },
        spec: serde_json::json!({
            "holder": cfg.holder,
            "renewTime": chrono::Utc::now(),
            "leaseDurationSeconds": cfg.duration.as_secs_f64(),
        }),
        status: serde_json::Value::Null,
    }
}

/// Contends for the lease until `stop`; `leader` says whether this contender holds it.
pub async fn run(
    backend: Arc<dyn Backend>,
    cfg: LeaseConfig,
    leader: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let period = cfg.duration / 3;
    let mut renewed: Option<Instant> = None;
    // The other holder's lease as last seen, and since when it is unchanged.
    let mut seen: Option<(Revision, Instant)> = None;
    loop {
        let held = match step(&*backend, &cfg, &mut seen).await {
            Ok(held) => held,
            Err(e) => {
                tracing::debug!(lease = %cfg.name, error = %e, "lease step failed");
                // Unsure: keep leading only while the last renewal still holds.
                renewed.is_some_and(|at| at.elapsed() < cfg.duration)
            }
        };
        if held && leader.send_replace(true) != held {
            tracing::info!(lease = %cfg.name, holder = %cfg.holder, "took the lease: leading");
        }
        if !held && leader.send_replace(false) {
            tracing::warn!(lease = %cfg.name, holder = %cfg.holder, "lost the lease: no longer leading");
            renewed = None;
        }
        if held {
            renewed = Some(Instant::now());
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(period) => {}
        }
    }
    leader.send_replace(false);
}

/// One look at the lease: creates, renews or takes it over when it may. `Ok(true)` when this
/// contender holds it now.
async fn step(
    backend: &dyn Backend,
    cfg: &LeaseConfig,
    seen: &mut Option<(Revision, Instant)>,
) -> Result<bool, StoreError> {
    let cur = match backend.get(LEASE_KIND, &cfg.name).await {
        Ok(o) => o,
        Err(e) if e.is_not_found() => {
            // Create-only: of contenders racing for a new lease exactly one gets it.
            return match backend.create(lease(cfg, 0)).await {
                Ok(_) => Ok(true),
                Err(StoreError::AlreadyExists { .. }) => Ok(false),
                Err(e) => Err(e),
            };
        }
        Err(e) => return Err(e),
    };
    let rv = cur.metadata.resource_version;
    if cur.spec["holder"] == cfg.holder.as_str() {
        *seen = None;
        return match backend.apply(lease(cfg, rv), false).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        };
    }
    let since = match *seen {
        Some((r, at)) if r == rv => at,
        _ => {
            *seen = Some((rv, Instant::now()));
            return Ok(false);
        }
    };
    if since.elapsed() < cfg.duration {
        return Ok(false);
    }
    tracing::info!(lease = %cfg.name, from = %cur.spec["holder"], "the lease was not renewed in time: taking it over");
    match backend.apply(lease(cfg, rv), false).await {
        Ok(_) => {
            *seen = None;
            Ok(true)
        }
        Err(e) if e.is_conflict() => Ok(false),
        Err(e) => Err(e),
    }
}
