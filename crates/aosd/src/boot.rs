//! The boot runtime of this node: the BootSlot controller on this machine's EFI variables and
//! partitions (or on a machine in a box with `runtimes.boot.simulate`), its health gate asking
//! the store whether the named Instances are Ready, and the node's one BootSlot object.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use std::path::PathBuf;

use aos_api::{condition, BootSlotSpec, InstanceSpec, Object, Spec};
use aos_bootslot_controller::records::{Records, RECOVERY};
use aos_bootslot_controller::{BootEnv, Crashpoints, Settings, SlotSetting};
use aos_reconcile::ControllerConfig;
use aos_slots::device::partition_of;
use aos_slots::efi::{BootVars, EfiDir, EfiVars, LoadOption};
use aos_slots::health::{Health, HealthGate, Readiness, Round};
use aos_slots::machine::{BeforeReboot, Machine, RealMachine};
use aos_slots::sim::{SimHealth, SimMachine};
use aos_store::{Api, Backend};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// Whether an Instance is Ready, from the store.
pub(crate) struct StoreReadiness(pub(crate) Arc<dyn Backend>);

#[async_trait::async_trait]
impl Readiness for StoreReadiness {
    async fn ready(&self, name: &str) -> Result<bool, String> {
        match Api::<InstanceSpec>::new(self.0.clone()).get_opt(name).await {
            Ok(Some(i)) => Ok(i.status.common.is_true(condition::READY)),
            Ok(None) => Err("no such Instance".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// The gate, and on a simulated machine what its image says as well.
struct Both(Vec<Arc<dyn Health>>);

#[async_trait::async_trait]
impl Health for Both {
    async fn round(&self) -> Round {
        let mut all = Round::default();
        for h in &self.0 {
            let r = h.round().await;
            all.failed.extend(r.failed);
            all.passed.extend(r.passed);
        }
        all
    }
}

const SIM_SLOT_BYTES: u64 = 64 << 20;
const LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";

/// The slots and the ports the controller works through.
struct Ports {
    a: SlotSetting,
    b: SlotSetting,
    recovery: Option<SlotSetting>,
    efi: Arc<dyn EfiVars>,
    machine: Arc<dyn Machine>,
    health: Arc<dyn Health>,
}

/// A new simulated machine as a factory leaves it: version 1.0 in slot A, booted by an entry
/// the installer made.
fn factory(m: &SimMachine) -> Result<(), aos_slots::SlotsError> {
    m.install("a", &aos_slots::sim::image("1.0", true, 4096))?;
    let efi = m.efi();
    let v = BootVars(efi.as_ref());
    if let Some(a) = m.slot("a") {
        v.set_entry(0, &LoadOption::new("factory a", a.disk.clone(), LOADER))?;
        v.set_order(&[0])?;
    }
    Ok(())
}

/// The slots found from the partition the machine booted (BootCurrent's hard-drive node).
fn derived(efi: &dyn EfiVars) -> anyhow::Result<aos_slots::partition::Derived> {
    let v = BootVars(efi);
    let current = v
        .current()?
        .context("runtimes.boot: no BootCurrent to find the slots from; name slot_a and slot_b")?;
    let entry = v
        .entry(current)?
        .with_context(|| format!("runtimes.boot: Boot{current:04X} does not exist"))?;
    let hd = entry.hard_drive().with_context(|| {
        format!("runtimes.boot: Boot{current:04X} names no partition; name slot_a and slot_b")
    })?;
    let booted = aos_slots::partition::partition_by_guid(&hd.guid)
        .with_context(|| format!("runtimes.boot: no partition has the GUID {}", hd.guid))?;
    Ok(aos_slots::partition::derive_slots(&booted)?)
}

/// A slot on a partition. Its GPT entry is read once, here: a partition table does not change
/// under a running system. Only if it cannot be read now is it read again at each reconcile
/// (which says why in the BootSlot's status).
fn real_slot(name: &str, device: PathBuf) -> SlotSetting {
    let partition = match partition_of(&device) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(slot = name, device = %device.display(), error = %e, "the slot's partition does not read");
            None
        }
    };
    SlotSetting {
        name: name.into(),
        device,
        partition,
    }
}

/// Creates the object `name` of kind `S` with an empty spec, unless it exists.
pub(crate) async fn ensure_object<S: Spec + Default>(
    backend: &Arc<dyn Backend>,
    name: &str,
) -> anyhow::Result<()> {
    let api = Api::<S>::new(backend.clone());
    if api.get_opt(name).await?.is_none() {
        api.apply(&Object::new(name.to_string(), S::default()))
            .await
            .with_context(|| format!("failed to create the {} {name}", S::KIND))?;
    }
    Ok(())
}

/// The controller's environment from the config.
fn env(
    c: &Config,
    name: &str,
    backend: Arc<dyn Backend>,
    before_reboot: Option<Arc<dyn BeforeReboot>>,
) -> anyhow::Result<Arc<BootEnv>> {
    let b = &c.runtimes.boot;
    let gate: Arc<dyn Health> = Arc::new(HealthGate::new(
        b.health.clone(),
        Arc::new(StoreReadiness(backend)),
    ));
    let mut versions = aos_bootslot_controller::filesystem_versions();
    let ports = if b.simulate {
        let dir = c.data_dir.join("boot-sim");
        let m = Arc::new(
            SimMachine::new(&dir, &["a", "b", RECOVERY], SIM_SLOT_BYTES)
                .context("failed to open the simulated machine")?
                .with_instant_reboot(),
        );
        if m.version_in("a").is_none() && m.version_in("b").is_none() {
            factory(&m).context("failed to install the simulated machine")?;
        }
        // Starting the agent is the simulated machine's boot.
        m.power_on()
            .context("failed to boot the simulated machine")?;
        let slot = |name: &str| {
            m.slot(name).map(|s| SlotSetting {
                name: name.into(),
                device: s.path.clone(),
                partition: Some(s.disk.clone()),
            })
        };
        let (a, bs, r) = (slot("a"), slot("b"), slot(RECOVERY));
        let health = Arc::new(Both(vec![gate, Arc::new(SimHealth(m.clone()))]));
        let sim = m.clone();
        versions = Arc::new(move |slot: &SlotSetting, _: &str| sim.version_in(&slot.name));
        let (Some(a), Some(bs)) = (a, bs) else {
            anyhow::bail!("the simulated machine has no slots a and b");
        };
        Ports {
            a,
            b: bs,
            recovery: r,
            efi: m.efi(),
            machine: m,
            health,
        }
    } else {
        let efi = Arc::new(EfiDir::new(&b.efivars).context("runtimes.boot.efivars")?);
        let (a, bs, mut recovery) = if b.slot_a.as_os_str().is_empty() {
            let d = derived(efi.as_ref())?;
            tracing::info!(a = %d.a.display(), b = %d.b.display(), recovery = ?d.recovery, "found the boot slots from the booted partition");
            (d.a, d.b, d.recovery)
        } else {
            (b.slot_a.clone(), b.slot_b.clone(), None)
        };
        if !b.recovery.as_os_str().is_empty() {
            recovery = Some(b.recovery.clone());
        }
        let r = recovery.map(|r| real_slot(RECOVERY, r));
        Ports {
            a: real_slot("a", a),
            b: real_slot("b", bs),
            recovery: r,
            efi,
            machine: Arc::new(RealMachine::new(before_reboot)),
            health: gate,
        }
    };
    let work_dir = c.data_dir.join("boot");
    let Ports {
        a,
        b: bslot,
        recovery,
        efi,
        machine,
        health,
    } = ports;
    let settings = Settings {
        a,
        b: bslot,
        recovery,
        loader: b.loader.clone(),
        version_file: b.version_file.clone(),
        limits: aos_slots::health::Limits {
            max_attempts: b.max_attempts.max(1),
            probation: b.health.probation(),
            interval: b.health.interval(),
        },
        reboot_wait: if b.simulate {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(60)
        },
        object: Some(name.to_string()),
        unit_node: c.node.in_unit().then(|| name.to_string()),
    };
    Ok(Arc::new(BootEnv {
        settings,
        efi,
        machine,
        health,
        records: Records::new(&work_dir).context("failed to open the boot records")?,
        crash: Crashpoints::from_env("boot"),
        versions,
    }))
}

/// Creates the node's BootSlot (empty spec) and runs its controller.
pub async fn spawn(
    tasks: &mut JoinSet<()>,
    c: &Config,
    name: &str,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    shutdown: &CancellationToken,
    before_reboot: Option<Arc<dyn BeforeReboot>>,
) -> anyhow::Result<()> {
    let env = env(c, name, backend.clone(), before_reboot)?;
    ensure_object::<BootSlotSpec>(&backend, name).await?;
    tasks.spawn(aos_bootslot_controller::run(
        env,
        backend,
        config,
        shutdown.clone(),
    ));
    Ok(())
}
