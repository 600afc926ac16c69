//! A machine in a box, for tests and demos of the boot runtime without a VM: the EFI boot
//! manager's rules over an [`EfiDir`] on a plain directory (`BootNext` once and deleted before
//! it is tried, then `BootOrder`; an entry that does not boot is passed over; `BootCurrent` set
//! to what booted), slot files standing for GPT partitions, a boot id that changes at every
//! boot, a clock that tests can move, and boot images that say themselves whether they boot
//! and whether the system they hold is healthy. Only the firmware, the reboot and the clock
//! are simulated: the controller's EFI variables, slot writes and records are the real code.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::efi::{BootVars, EfiDir, EfiVars, HardDrive};
use crate::health::{Health, Round};
use crate::machine::Machine;
use crate::SlotsError;

/// The first bytes of an image the simulated firmware boots.
pub const MAGIC: &[u8] = b"AOSSIM-BOOT\n";

/// A simulated boot image of `size` bytes: it boots, holds `version`, and is healthy or not.
pub fn image(version: &str, healthy: bool, size: usize) -> Vec<u8> {
    let health = if healthy { "ok" } else { "failing" };
    let mut b = MAGIC.to_vec();
    b.extend_from_slice(format!("version={version}\nhealth={health}\n").as_bytes());
    // Enough varied bytes that a short write or a wrong block shows in a digest.
    let mut x: u32 = 0x9e37_79b9 ^ version.len() as u32;
    while b.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        b.push((x & 0xff) as u8);
    }
    b
}

/// One slot of the simulated disk.
#[derive(Clone, Debug)]
pub struct SimSlot {
    /// `a`, `b`, `recovery`.
    pub name: String,
    /// The file standing for the partition.
    pub path: PathBuf,
    /// The partition a boot entry names.
    pub disk: HardDrive,
}

/// The simulated machine (see the module documentation).
pub struct SimMachine {
    dir: PathBuf,
    efi: Arc<EfiDir>,
    slots: Vec<SimSlot>,
    nonce: String,
    boots: AtomicU64,
    reboots: AtomicU64,
    skew: Mutex<chrono::Duration>,
    instant: bool,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

impl SimMachine {
    /// A machine under `dir`: EFI variables in `dir/efivars`, one file of `size` bytes per
    /// slot, each a partition of a disk with 512-byte blocks. What is already there is kept
    /// (a machine reopened after the agent restarts), and a slot's partition GUID depends only
    /// on `dir` and its name.
    pub fn new(dir: &Path, slots: &[&str], size: u64) -> Result<Self, SlotsError> {
        let vars = dir.join("efivars");
        std::fs::create_dir_all(&vars)
            .map_err(io(format!("failed to create {}", vars.display())))?;
        let mut made = Vec::new();
        let blocks = size / 512;
        for (i, name) in slots.iter().enumerate() {
            let path = dir.join(format!("slot-{name}.img"));
            if !path.exists() {
                let f = std::fs::File::create(&path)
                    .map_err(io(format!("failed to create {}", path.display())))?;
                f.set_len(size)
                    .map_err(io(format!("failed to size {}", path.display())))?;
            }
            let seed = Sha256::digest(format!("{}/{name}", dir.display()).as_bytes());
            let mut g = [0u8; 16];
            g.copy_from_slice(&seed[..16]);
            made.push(SimSlot {
                name: name.to_string(),
                path,
                disk: HardDrive {
                    number: i as u32 + 1,
                    start: 2048 + i as u64 * blocks,
                    size: blocks,
                    guid: uuid::Builder::from_random_bytes(g).into_uuid(),
                },
            });
        }
        Ok(SimMachine {
            dir: dir.to_path_buf(),
            efi: Arc::new(EfiDir::new(vars)?),
            slots: made,
            nonce: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
            boots: AtomicU64::new(0),
            reboots: AtomicU64::new(0),
            skew: Mutex::new(chrono::Duration::zero()),
            instant: false,
        })
    }

    /// A reboot powers the machine on again at once (an agent that lives on across the
    /// simulated reboot, as in `aosd`'s simulated boot runtime).
    pub fn with_instant_reboot(mut self) -> Self {
        self.instant = true;
        self
    }

    /// Where the machine's files are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The EFI variables.
    pub fn efi(&self) -> Arc<EfiDir> {
        self.efi.clone()
    }

    /// The slots.
    pub fn slots(&self) -> &[SimSlot] {
        &self.slots
    }

    /// The slot named `name`.
    pub fn slot(&self, name: &str) -> Option<&SimSlot> {
        self.slots.iter().find(|s| s.name == name)
    }

    /// Writes `bytes` to the slot `name` (the factory's image).
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<(), SlotsError> {
        let s = self
            .slot(name)
            .ok_or_else(|| SlotsError::BadImage(format!("no slot {name}")))?;
        // Written in place: the slot keeps its size, as a partition does.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&s.path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
            .map_err(io(format!("failed to write {}", s.path.display())))
    }

    /// What the image in `slot` says about itself: whether it boots, and the value of `key`.
    fn read_image(&self, slot: &SimSlot, key: &str) -> Option<String> {
        let mut head = vec![0u8; 256];
        let n = std::fs::File::open(&slot.path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
            .ok()?;
        let head = head.get(..n)?;
        let rest = head.strip_prefix(MAGIC)?;
        let text = String::from_utf8_lossy(rest);
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    /// The slot that entry `n` boots, if it boots.
    fn bootable(&self, n: u16) -> Option<&SimSlot> {
        let opt = BootVars(self.efi.as_ref()).entry(n).ok()??;
        let disk = opt.hard_drive()?;
        let slot = self.slots.iter().find(|s| &s.disk == disk)?;
        self.read_image(slot, "version").map(|_| slot)
    }

    /// Powers the machine on (after a reboot or a cut): the firmware's boot manager chooses,
    /// and a new boot begins. Returns the slot that booted, or `None` when nothing did.
    pub fn power_on(&self) -> Result<Option<String>, SlotsError> {
        let v = BootVars(self.efi.as_ref());
        let mut tries = Vec::new();
        if let Some(n) = v.next()? {
            v.clear_next()?;
            tries.push(n);
        }
        tries.extend(v.order()?);
        self.boots.fetch_add(1, Ordering::SeqCst);
        for n in tries {
            if let Some(slot) = self.bootable(n) {
                self.efi.set("BootCurrent", &n.to_le_bytes())?;
                tracing::info!(entry = n, slot = %slot.name, "simulated firmware booted");
                return Ok(Some(slot.name.clone()));
            }
        }
        self.efi.delete("BootCurrent")?;
        Ok(None)
    }

    /// The slot the machine runs.
    pub fn booted(&self) -> Option<String> {
        let n = BootVars(self.efi.as_ref()).current().ok()??;
        self.bootable(n).map(|s| s.name.clone())
    }

    /// The version the image in `slot` holds, if it boots.
    pub fn version_in(&self, slot: &str) -> Option<String> {
        self.read_image(self.slot(slot)?, "version")
    }

    /// Reboots asked for so far.
    pub fn reboots(&self) -> u64 {
        self.reboots.load(Ordering::SeqCst)
    }

    /// Moves the clock on by `d`.
    pub fn advance(&self, d: std::time::Duration) {
        let mut s = self.skew.lock().unwrap_or_else(|e| e.into_inner());
        *s += chrono::Duration::from_std(d).unwrap_or_default();
    }
}

#[async_trait::async_trait]
impl Machine for SimMachine {
    fn boot_id(&self) -> Result<String, SlotsError> {
        let n = self.boots.load(Ordering::SeqCst);
        Ok(format!("sim-{}-{n}", self.nonce))
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.skew.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn reboot(&self, why: &str) -> Result<(), SlotsError> {
        tracing::info!(reason = why, "simulated reboot asked for");
        self.reboots.fetch_add(1, Ordering::SeqCst);
        if self.instant {
            self.power_on()?;
        }
        Ok(())
    }
}

/// The health of the simulated system: what the booted image says.
pub struct SimHealth(pub Arc<SimMachine>);

#[async_trait::async_trait]
impl Health for SimHealth {
    async fn round(&self) -> Round {
        let m = &self.0;
        let health = m
            .booted()
            .and_then(|s| m.slot(&s).and_then(|slot| m.read_image(slot, "health")));
        match health.as_deref() {
            Some("ok") => Round {
                failed: Vec::new(),
                passed: vec!["system".into()],
            },
            other => Round {
                failed: vec![format!("system: health {}", other.unwrap_or("unknown"))],
                passed: Vec::new(),
            },
        }
    }
}

/// Why a run of an agent on a simulated machine ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Stop {
    /// Nothing more to do until something changes.
    Settled,
    /// The agent asked for a reboot.
    Reboot,
    /// The agent was killed at a crash point.
    Killed,
}

/// Runs `reconciler` on the object `name`, as its controller would, until it settles, asks
/// for a reboot (`reboots` counts them) or is killed at a crash point of `crash`; a wait it
/// asks for moves the machine's clock with `advance` instead of sleeping. For tests: a
/// failed reconcile, or one that never settles, panics.
pub async fn run_agent<R: aos_reconcile::Reconciler>(
    reconciler: &R,
    ctx: &aos_reconcile::Context<R::Kind>,
    name: &str,
    crash: &crate::crash::Crashpoints,
    reboots: impl Fn() -> u64,
    advance: impl Fn(std::time::Duration),
) -> Stop {
    use aos_reconcile::Action;
    let before = reboots();
    for _ in 0..200 {
        let obj = match ctx.api.get(name).await {
            Ok(o) => Arc::new(o),
            Err(e) => panic!("{name} does not read: {e}"),
        };
        let action = match reconciler.apply(obj, ctx).await {
            Ok(a) => a,
            Err(e) => panic!("reconcile failed: {e}"),
        };
        if crash.take_killed().is_some() {
            return Stop::Killed;
        }
        if reboots() > before {
            return Stop::Reboot;
        }
        match action {
            Action::Requeue(d) if d > std::time::Duration::from_millis(1) => advance(d),
            Action::Requeue(_) => {}
            Action::AwaitChange => return Stop::Settled,
        }
    }
    panic!("the agent did not settle in 200 reconciles");
}
