//! The RootfsSlot controller on a device in a box: a root tree, a work directory, and a
//! "power on" that unmounts what the last boot mounted and runs the real boot side
//! (`deploy/aos-rootfs boot`), after which the running root is the trial root if the boot side
//! mounted one, else the root. Images are made by `aosctl pack --rootfs` (the library), the
//! store is in memory, the health of a root is what its `etc/aos/health` says. Needs root
//! (squashfs, overlay and tmpfs mounts); unmounts everything when dropped.
// Each test binary uses a part of the rig.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{
    ItemPhase, ItemRef, ItemSpec, ItemType, LayerPhase, LayerSpec, Object, RootfsSlotSpec,
    RootfsSlotStatus,
};
use aos_reconcile::Context;
use aos_rootfsslot_controller::records::Records;
use aos_rootfsslot_controller::{
    Crashpoints, RootfsEnv, RootfsSlotReconciler, Settings, FULL_MEDIA_TYPE, INC_MEDIA_TYPE,
};
use aos_slots::health::{Health, Round};
use aos_slots::machine::Machine;
use aos_slots::sim::run_agent;
pub use aos_slots::sim::Stop;
use aos_slots::SlotsError;
use aos_store::{Api, Backend, Embedded, EmbeddedOptions};
use chrono::{DateTime, Utc};

pub const NAME: &str = "node";

pub fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root tree of `version`, healthy or not, with a hard-link pair and a device node.
pub fn tree(dir: &Path, version: &str, healthy: bool) -> PathBuf {
    let t = dir.join(format!("tree-{version}"));
    for d in [
        "etc/aos",
        "usr/bin",
        "dev",
        format!("var/v{version}").as_str(),
    ] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("etc/aos/version"), format!("{version}\n")).unwrap();
    let health = if healthy { "ok" } else { "failing" };
    std::fs::write(t.join("etc/aos/health"), format!("{health}\n")).unwrap();
    std::fs::write(t.join("usr/bin/tool"), format!("tool {version}\n")).unwrap();
    std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-alias")).unwrap();
    std::fs::write(t.join(format!("var/v{version}/only")), version).unwrap();
    sh(&[
        "mknod",
        t.join("dev/console").to_str().unwrap(),
        "c",
        "5",
        "1",
    ]);
    t
}

/// The device: its root, work directory, trial mount point and the running root's link.
pub struct Device {
    pub root: PathBuf,
    pub work: PathBuf,
    pub newroot: PathBuf,
    pub running: PathBuf,
    boots: AtomicU64,
    reboots: AtomicU64,
    skew: Mutex<chrono::Duration>,
    /// Power on without the boot side (an initramfs without the script).
    pub no_boot_side: std::sync::atomic::AtomicBool,
}

impl Device {
    fn new(dir: &Path, base: &Path) -> Device {
        let root = dir.join("root");
        sh(&["cp", "-a", base.to_str().unwrap(), root.to_str().unwrap()]);
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let running = dir.join("running");
        std::os::unix::fs::symlink(&root, &running).unwrap();
        Device {
            root,
            work,
            newroot: dir.join("newroot"),
            running,
            boots: AtomicU64::new(0),
            reboots: AtomicU64::new(0),
            skew: Mutex::new(chrono::Duration::zero()),
            no_boot_side: false.into(),
        }
    }

    fn unmount_all(&self) {
        for m in [
            self.newroot.clone(),
            self.work.join("trial"),
            self.work.join("image.mnt"),
        ] {
            while Command::new("umount")
                .arg(&m)
                .output()
                .unwrap()
                .status
                .success()
            {}
        }
    }

    fn mounted(p: &Path) -> bool {
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&format!(" {} ", p.display()))
    }

    /// A boot: the last boot's mounts go, the boot side acts, the running root is chosen.
    pub fn power_on(&self) {
        self.unmount_all();
        if !self.no_boot_side.load(Ordering::SeqCst) {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/aos-rootfs");
            sh(&[
                "sh",
                script.to_str().unwrap(),
                "boot",
                self.root.to_str().unwrap(),
                self.work.to_str().unwrap(),
                self.newroot.to_str().unwrap(),
            ]);
        }
        let target = if Self::mounted(&self.newroot) {
            &self.newroot
        } else {
            &self.root
        };
        let _ = std::fs::remove_file(&self.running);
        std::os::unix::fs::symlink(target, &self.running).unwrap();
        self.boots.fetch_add(1, Ordering::SeqCst);
    }

    pub fn reboots(&self) -> u64 {
        self.reboots.load(Ordering::SeqCst)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.unmount_all();
    }
}

#[async_trait::async_trait]
impl Machine for Device {
    fn boot_id(&self) -> Result<String, SlotsError> {
        Ok(format!("boot-{}", self.boots.load(Ordering::SeqCst)))
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.skew.lock().unwrap()
    }

    async fn reboot(&self, _why: &str) -> Result<(), SlotsError> {
        self.reboots.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// What the running root's `etc/aos/health` says.
struct RootHealth(Arc<Device>);

#[async_trait::async_trait]
impl Health for RootHealth {
    async fn round(&self) -> Round {
        let h = std::fs::read_to_string(self.0.running.join("etc/aos/health")).unwrap_or_default();
        if h.trim() == "ok" {
            Round {
                failed: vec![],
                passed: vec!["root".into()],
            }
        } else {
            Round {
                failed: vec![format!("root: health {}", h.trim())],
                passed: vec![],
            }
        }
    }
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub device: Arc<Device>,
    pub api: Api<RootfsSlotSpec>,
    backend: Arc<dyn Backend>,
    settings: Settings,
    pub env: Arc<RootfsEnv>,
    reconciler: RootfsSlotReconciler,
}

impl Rig {
    /// A device whose root is `base`.
    pub async fn new(base: &Path) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let device = Arc::new(Device::new(dir.path(), base));
        device.power_on();
        let settings = Settings {
            work_dir: device.work.clone(),
            root_dir: device.running.clone(),
            version_file: "etc/aos/version".into(),
            preserve: vec!["/etc/machine-id".into()],
            limits: aos_slots::health::Limits {
                max_attempts: 2,
                probation: Duration::from_secs(60),
                interval: Duration::from_secs(20),
            },
            reboot_wait: Duration::from_secs(60),
            object: None,
            unit_node: None,
        };
        let backend: Arc<dyn Backend> =
            Arc::new(Embedded::open(EmbeddedOptions::in_memory()).unwrap());
        let api = Api::<RootfsSlotSpec>::new(backend.clone());
        api.apply(&Object::new(NAME.to_string(), RootfsSlotSpec::default()))
            .await
            .unwrap();
        let env = Self::env(&settings, &device);
        Rig {
            dir,
            reconciler: RootfsSlotReconciler::new(env.clone()),
            env,
            device,
            api,
            backend,
            settings,
        }
    }

    fn env(settings: &Settings, device: &Arc<Device>) -> Arc<RootfsEnv> {
        Arc::new(RootfsEnv {
            settings: settings.clone(),
            machine: device.clone(),
            health: Arc::new(RootHealth(device.clone())),
            records: Records::new(&settings.work_dir.join("records")).unwrap(),
            crash: Crashpoints::default(),
        })
    }

    /// A Ready Item `os` of the version of `tree`, packed full or against `base`.
    pub async fn item(&self, tree: &Path, base: Option<&Path>) -> String {
        let version = std::fs::read_to_string(tree.join("etc/aos/version"))
            .unwrap()
            .trim()
            .to_string();
        let archive = self.dir.path().join(format!("os-{version}.tar"));
        let packed =
            aosctl::pack::pack_rootfs(tree, base, "etc/aos/version", &archive, "linux", "amd64")
                .unwrap();
        let x = self.dir.path().join(format!("x-{version}"));
        std::fs::create_dir_all(&x).unwrap();
        sh(&[
            "tar",
            "-xf",
            archive.to_str().unwrap(),
            "-C",
            x.to_str().unwrap(),
        ]);
        let blob = x.join("blobs/sha256").join(&packed.layer_digest[7..]);
        let media = if base.is_some() {
            INC_MEDIA_TYPE
        } else {
            FULL_MEDIA_TYPE
        };
        let layer = format!("os-{version}");
        let layers = Api::<LayerSpec>::new(self.backend.clone());
        let spec = LayerSpec {
            digest: packed.layer_digest.clone(),
            media_type: media.into(),
            size: packed.layer_size,
            ..Default::default()
        };
        layers
            .apply(&Object::new(layer.clone(), spec))
            .await
            .unwrap();
        layers
            .update_status(&layer, |s| {
                s.phase = LayerPhase::Ready;
                s.path = Some(blob.display().to_string());
            })
            .await
            .unwrap();
        let items = Api::<ItemSpec>::new(self.backend.clone());
        let spec = ItemSpec {
            item_id: "os".into(),
            version: version.clone(),
            type_: ItemType::Component,
            source: aos_api::ItemSource {
                http: Some(format!("http://updates.test/os-{version}.tar")),
                ..Default::default()
            },
            ..Default::default()
        };
        items
            .apply(&Object::new(layer.clone(), spec))
            .await
            .unwrap();
        items
            .update_status(&layer, |s| {
                s.phase = ItemPhase::Ready;
                s.layers = vec![layer.clone()];
            })
            .await
            .unwrap();
        version
    }

    pub async fn want(&self, version: &str) {
        let mut obj = self.api.get(NAME).await.unwrap();
        obj.spec.item = Some(ItemRef {
            item_id: "os".into(),
            version: version.into(),
        });
        self.api.apply(&obj).await.unwrap();
    }

    /// Runs the agent until it settles, reboots or is killed.
    pub async fn run(&self) -> Stop {
        let ctx = Context {
            api: self.api.clone(),
            reader: Default::default(),
            backend: self.backend.clone(),
            events: Default::default(),
            metrics: Default::default(),
        };
        let reboots = || self.device.reboots();
        run_agent(
            &self.reconciler,
            &ctx,
            NAME,
            &self.env.crash,
            reboots,
            |d| *self.device.skew.lock().unwrap() += chrono::Duration::from_std(d).unwrap(),
        )
        .await
    }

    /// A new agent on what is on disk (the device keeps running).
    pub fn restart(&mut self) {
        let armed = self.env.crash.armed();
        self.env = Self::env(&self.settings, &self.device);
        if let Some(at) = armed {
            self.env.crash.set(&at);
        }
        self.reconciler = RootfsSlotReconciler::new(self.env.clone());
    }

    /// A reboot or a power cut: the device boots, a new agent starts.
    pub fn power_cycle(&mut self) {
        self.device.power_on();
        self.restart();
    }

    /// Runs through reboots until the agent settles; how many reboots it took.
    pub async fn converge(&mut self) -> usize {
        for n in 0..10 {
            match self.run().await {
                Stop::Settled => return n,
                Stop::Reboot => self.power_cycle(),
                Stop::Killed => panic!("killed with no crash point set"),
            }
        }
        panic!("no end after 10 reboots");
    }

    pub async fn status(&self) -> RootfsSlotStatus {
        self.api.get(NAME).await.unwrap().status
    }

    /// The running root's version.
    pub fn running(&self) -> String {
        std::fs::read_to_string(self.device.running.join("etc/aos/version"))
            .unwrap()
            .trim()
            .to_string()
    }
}
