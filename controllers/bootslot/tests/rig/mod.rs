//! The BootSlot controller on a machine in a box ([`aos_slots::sim`]): the simulated firmware
//! over EFI variables in a directory, slot files, and the in-memory store holding the Items and
//! Layers a component comes from. The agent is the real reconciler, run until it settles,
//! asks for a reboot, or is killed at a crash point; a reboot powers the machine on again and
//! starts a new agent from the records on disk, as a device would.
// Each test binary uses a part of the rig.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aos_api::{
    BootSlotSpec, BootSlotStatus, ItemPhase, ItemRef, ItemSpec, LayerPhase, LayerSpec, Object,
};
use aos_bootslot_controller::records::Records;
use aos_bootslot_controller::{
    BootEnv, BootSlotReconciler, Crashpoints, Settings, SlotSetting, BOOT_MEDIA_TYPE,
};
use aos_reconcile::Context;
use aos_slots::efi::{BootVars, LoadOption};
pub use aos_slots::sim::Stop;
use aos_slots::sim::{self, run_agent, SimHealth, SimMachine};
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use sha2::{Digest, Sha256};

/// The loader every entry names.
pub const LOADER: &str = "\\EFI\\BOOT\\BOOTX64.EFI";
/// The name of the BootSlot.
pub const NAME: &str = "node";
/// Slot size.
pub const SIZE: u64 = 1 << 20;

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub machine: Arc<SimMachine>,
    pub api: Api<BootSlotSpec>,
    backend: Arc<dyn Backend>,
    settings: Settings,
    pub env: Arc<BootEnv>,
    reconciler: BootSlotReconciler,
}

/// Versions as the simulated images say them.
pub fn sim_versions(m: &Arc<SimMachine>) -> aos_bootslot_controller::VersionReader {
    let m = m.clone();
    Arc::new(move |slot: &SlotSetting, _: &str| m.version_in(&slot.name))
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

impl Rig {
    /// A machine with slots A, B (and recovery), version `1.0` installed in A and booted by an
    /// entry the installer made, beside a network boot entry that is not ours.
    pub async fn new(recovery: bool) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let names: &[&str] = if recovery {
            &["a", "b", "recovery"]
        } else {
            &["a", "b"]
        };
        let machine = Arc::new(SimMachine::new(dir.path(), names, SIZE).unwrap());
        machine
            .install("a", &sim::image("1.0", true, 64 << 10))
            .unwrap();
        if recovery {
            machine
                .install("recovery", &sim::image("r1", true, 64 << 10))
                .unwrap();
        }
        let efi = machine.efi();
        let v = BootVars(efi.as_ref());
        let a = machine.slot("a").unwrap().disk.clone();
        v.set_entry(0, &LoadOption::new("installer", a, LOADER))
            .unwrap();
        let mut pxe = LoadOption::new("pxe", machine.slot("b").unwrap().disk.clone(), "x");
        pxe.path.clear();
        v.set_entry(3, &pxe).unwrap();
        v.set_order(&[0, 3]).unwrap();
        assert_eq!(machine.power_on().unwrap().as_deref(), Some("a"));

        let slot = |n: &str| {
            machine.slot(n).map(|s| SlotSetting {
                name: n.into(),
                device: s.path.clone(),
                partition: Some(s.disk.clone()),
            })
        };
        let settings = Settings {
            a: slot("a").unwrap(),
            b: slot("b").unwrap(),
            recovery: slot("recovery"),
            loader: LOADER.into(),
            version_file: "etc/version".into(),
            limits: aos_slots::health::Limits {
                max_attempts: 3,
                probation: Duration::from_secs(60),
                interval: Duration::from_secs(20),
            },
            reboot_wait: Duration::from_secs(60),
            object: None,
            unit_node: None,
        };
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        let api = Api::<BootSlotSpec>::new(backend.clone());
        api.apply(&Object::new(NAME.to_string(), BootSlotSpec::default()))
            .await
            .unwrap();
        let env = Self::env(&settings, &machine);
        Rig {
            dir,
            reconciler: BootSlotReconciler::new(env.clone()),
            env,
            machine,
            api,
            backend,
            settings,
        }
    }

    fn env(settings: &Settings, machine: &Arc<SimMachine>) -> Arc<BootEnv> {
        Arc::new(BootEnv {
            settings: settings.clone(),
            efi: machine.efi(),
            machine: machine.clone(),
            health: Arc::new(SimHealth(machine.clone())),
            records: Records::new(&machine.dir().join("records")).unwrap(),
            crash: Crashpoints::default(),
            versions: sim_versions(machine),
        })
    }

    /// A Ready Item `id` of `version` whose one Layer is the gzip blob `blob` (with the digest
    /// `digest`, the blob's own when `None`).
    pub async fn item_blob(&self, id: &str, version: &str, blob: &[u8], digest: Option<&str>) {
        let path: PathBuf = self.dir.path().join(format!("{id}-{version}.gz"));
        std::fs::write(&path, blob).unwrap();
        let digest = digest.map(String::from).unwrap_or_else(|| sha(blob));
        let layer = format!("{id}-{version}");
        let layers = Api::<LayerSpec>::new(self.backend.clone());
        let spec = LayerSpec {
            digest: digest.clone(),
            media_type: BOOT_MEDIA_TYPE.into(),
            size: blob.len() as u64,
            ..Default::default()
        };
        layers
            .apply(&Object::new(layer.clone(), spec))
            .await
            .unwrap();
        layers
            .update_status(&layer, |s| {
                s.phase = LayerPhase::Ready;
                s.path = Some(path.display().to_string());
            })
            .await
            .unwrap();
        let items = Api::<ItemSpec>::new(self.backend.clone());
        let spec = ItemSpec {
            item_id: id.into(),
            version: version.into(),
            source: aos_api::ItemSource {
                http: Some(format!("http://updates.test/{id}-{version}.gz")),
                ..Default::default()
            },
            ..Default::default()
        };
        let name = format!("{id}-{version}");
        items.apply(&Object::new(name.clone(), spec)).await.unwrap();
        items
            .update_status(&name, |s| {
                s.phase = ItemPhase::Ready;
                s.layers = vec![layer.clone()];
            })
            .await
            .unwrap();
    }

    /// A Ready boot component holding the simulated image `version`.
    pub async fn item(&self, version: &str, healthy: bool) {
        let img = sim::image(version, healthy, 64 << 10);
        self.item_blob("os", version, &aos_testkit::image::gzip(&img), None)
            .await;
    }

    /// Asks for `version` of `os` in the A/B pair.
    pub async fn want(&self, version: &str) {
        self.set(|s| {
            s.item = Some(ItemRef {
                item_id: "os".into(),
                version: version.into(),
            })
        })
        .await;
    }

    /// Changes the spec.
    pub async fn set(&self, f: impl FnOnce(&mut BootSlotSpec)) {
        let mut obj = self.api.get(NAME).await.unwrap();
        f(&mut obj.spec);
        self.api.apply(&obj).await.unwrap();
    }

    /// Runs the agent until it settles, reboots or is killed; probation waits move the
    /// machine's clock instead of sleeping.
    pub async fn run(&self) -> Stop {
        let ctx = Context {
            api: self.api.clone(),
            reader: Default::default(),
            backend: self.backend.clone(),
            events: Default::default(),
            metrics: Default::default(),
        };
        let reboots = || self.machine.reboots();
        run_agent(
            &self.reconciler,
            &ctx,
            NAME,
            &self.env.crash,
            reboots,
            |d| self.machine.advance(d),
        )
        .await
    }

    /// Starts a new agent from what is on disk (the machine keeps running).
    pub fn restart(&mut self) {
        let armed = self.env.crash.armed();
        self.env = Self::env(&self.settings, &self.machine);
        if let Some(at) = armed {
            self.env.crash.set(&at);
        }
        self.reconciler = BootSlotReconciler::new(self.env.clone());
    }

    /// Cuts the power (or reboots): the firmware boots, a new agent starts. Returns the slot
    /// that booted.
    pub fn power_cycle(&mut self) -> Option<String> {
        let booted = self.machine.power_on().unwrap();
        self.restart();
        booted
    }

    /// Runs the agent through its reboots until it settles; the slots booted on the way.
    pub async fn converge(&mut self) -> Vec<String> {
        let mut booted = Vec::new();
        for _ in 0..10 {
            match self.run().await {
                Stop::Settled => return booted,
                Stop::Reboot => booted.push(self.power_cycle().expect("the machine boots")),
                Stop::Killed => panic!("killed with no crash point set"),
            }
        }
        panic!("no end after 10 reboots: {booted:?}");
    }

    /// The BootSlot's status.
    pub async fn status(&self) -> BootSlotStatus {
        self.api.get(NAME).await.unwrap().status
    }

    /// BootOrder, as slot names (`?` for entries that are not ours).
    pub fn order(&self) -> Vec<String> {
        let efi = self.machine.efi();
        let v = BootVars(efi.as_ref());
        v.order()
            .unwrap()
            .into_iter()
            .map(|n| {
                let disk = v.entry(n).unwrap().and_then(|o| o.hard_drive().cloned());
                self.machine
                    .slots()
                    .iter()
                    .find(|s| Some(&s.disk) == disk.as_ref())
                    .map(|s| s.name.clone())
                    .unwrap_or_else(|| format!("{n}"))
            })
            .collect()
    }

    /// BootNext.
    pub fn next(&self) -> Option<u16> {
        BootVars(self.machine.efi().as_ref()).next().unwrap()
    }

    /// The sha256 of the slot's bytes.
    pub fn slot_digest(&self, slot: &str) -> String {
        sha(&std::fs::read(&self.machine.slot(slot).unwrap().path).unwrap())
    }
}
