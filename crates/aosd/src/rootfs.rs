//! The rootfs runtime of this node: the RootfsSlot controller on this root and its work
//! directory, with the health gate asking the store whether the named Instances are Ready,
//! and the node's one RootfsSlot object.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use aos_api::RootfsSlotSpec;
use aos_reconcile::ControllerConfig;
use aos_rootfsslot_controller::records::Records;
use aos_rootfsslot_controller::{Crashpoints, RootfsEnv, Settings};
use aos_slots::health::HealthGate;
use aos_slots::machine::{BeforeReboot, RealMachine};
use aos_store::Backend;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::boot::{ensure_object, StoreReadiness};
use crate::config::Config;

/// Creates the node's RootfsSlot (empty spec) and runs its controller.
pub async fn spawn(
    tasks: &mut JoinSet<()>,
    c: &Config,
    name: &str,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    shutdown: &CancellationToken,
    before_reboot: Option<Arc<dyn BeforeReboot>>,
) -> anyhow::Result<()> {
    let r = &c.runtimes.rootfs;
    std::fs::create_dir_all(&r.work_dir)
        .with_context(|| format!("failed to create {}", r.work_dir.display()))?;
    let settings = Settings {
        work_dir: r.work_dir.clone(),
        root_dir: r.root_dir.clone(),
        version_file: r.version_file.clone(),
        preserve: r.preserve.clone(),
        limits: aos_slots::health::Limits {
            max_attempts: r.max_attempts.max(1),
            probation: r.health.probation(),
            interval: r.health.interval(),
        },
        reboot_wait: Duration::from_secs(60),
        object: Some(name.to_string()),
        unit_node: c.node.in_unit().then(|| name.to_string()),
    };
    let env = Arc::new(RootfsEnv {
        settings,
        machine: Arc::new(RealMachine::new(before_reboot)),
        health: Arc::new(HealthGate::new(
            r.health.clone(),
            Arc::new(StoreReadiness(backend.clone())),
        )),
        records: Records::new(&r.work_dir.join("records"))
            .context("failed to open the rootfs records")?,
        crash: Crashpoints::from_env("rootfs"),
    });
    ensure_object::<RootfsSlotSpec>(&backend, name).await?;
    tasks.spawn(aos_rootfsslot_controller::run(
        env,
        backend,
        config,
        shutdown.clone(),
    ));
    Ok(())
}
