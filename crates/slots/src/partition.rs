//! GPT partitions as the boot runtime names them: a partition as a boot entry's hard-drive
//! node (number, start, size, GUID; from sysfs and the partition table), the partition a GUID
//! names, and the A/B slots (and recovery) derived from the partition the machine booted, by
//! their GPT names (`boot_a`/`boot_b`/`boot_recovery`, or with `-`). No udev needed: sysfs and
//! `blkid -p`.

use std::path::{Path, PathBuf};

use crate::SlotsError;

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

fn sys_u64(p: &Path) -> Result<u64, SlotsError> {
    std::fs::read_to_string(p)
        .map_err(io(format!("failed to read {}", p.display())))?
        .trim()
        .parse()
        .map_err(|_| SlotsError::BadImage(format!("{} is not a number", p.display())))
}

/// The GPT partition `device` is, as a boot entry names it: number, start and size in the
/// disk's logical blocks (from sysfs), and its unique GUID (from the partition table, through
/// `blkid`).
pub fn partition_of(device: &Path) -> Result<crate::efi::HardDrive, SlotsError> {
    let real = std::fs::canonicalize(device)
        .map_err(io(format!("failed to resolve {}", device.display())))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let sys = Path::new("/sys/class/block").join(&name);
    if !sys.join("partition").exists() {
        return Err(SlotsError::BadImage(format!(
            "{} is not a partition (give the slot's partition in the config)",
            device.display()
        )));
    }
    let disk = std::fs::canonicalize(&sys)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| SlotsError::BadImage(format!("no disk holds {}", device.display())))?;
    let block = sys_u64(&disk.join("queue/logical_block_size"))
        .unwrap_or(512)
        .max(512);
    let per = block / 512;
    let out = std::process::Command::new("blkid")
        .args(["-p", "-s", "PART_ENTRY_UUID", "-o", "value"])
        .arg(&real)
        .output()
        .map_err(io("failed to run blkid".into()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let guid = uuid::Uuid::parse_str(&text).map_err(|_| {
        SlotsError::BadImage(format!(
            "{} has no GPT partition GUID (blkid says {text:?})",
            device.display()
        ))
    })?;
    Ok(crate::efi::HardDrive {
        number: sys_u64(&sys.join("partition"))? as u32,
        start: sys_u64(&sys.join("start"))? / per,
        size: sys_u64(&sys.join("size"))? / per,
        guid,
    })
}

/// A GPT field of the partition `dev` (`PART_ENTRY_UUID`, `PART_ENTRY_NAME`), through blkid.
fn entry(dev: &Path, field: &str) -> Option<String> {
    let out = std::process::Command::new("blkid")
        .args(["-p", "-s", field, "-o", "value"])
        .arg(dev)
        .output()
        .ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!v.is_empty()).then_some(v)
}

/// Every partition of every disk, as `/dev/<name>` (from sysfs).
fn partitions() -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir("/sys/class/block") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .map(|e| Path::new("/dev").join(e.file_name()))
        .filter(|p| p.exists())
        .collect();
    v.sort();
    v
}

/// The partition whose GPT unique GUID is `guid`.
pub fn partition_by_guid(guid: &uuid::Uuid) -> Option<PathBuf> {
    partitions().into_iter().find(|p| {
        entry(p, "PART_ENTRY_UUID").and_then(|g| uuid::Uuid::parse_str(&g).ok()) == Some(*guid)
    })
}

/// The slots derived from the booted partition `booted`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// Slot A.
    pub a: PathBuf,
    /// Slot B.
    pub b: PathBuf,
    /// The recovery partition, if the disk has one.
    pub recovery: Option<PathBuf>,
}

/// A/B (and recovery) from the partition the machine booted: its GPT name is `<stem>_a` or
/// `<stem>_b` (or with `-`); the other slot is the partition of the same disk named with the
/// other letter, recovery the one named `<stem>_recovery`.
pub fn derive_slots(booted: &Path) -> Result<Derived, SlotsError> {
    let name = entry(booted, "PART_ENTRY_NAME").ok_or_else(|| {
        SlotsError::BadImage(format!("{} has no GPT partition name", booted.display()))
    })?;
    let split = name
        .rfind(['_', '-'])
        .filter(|i| matches!(&name[i + 1..], "a" | "b" | "A" | "B"))
        .ok_or_else(|| {
            SlotsError::BadImage(format!(
                "the booted partition is named {name:?}, not <name>_a or <name>_b: name the slots in the config"
            ))
        })?;
    let (stem, sep) = (&name[..split], &name[split..split + 1]);
    let disk = std::fs::canonicalize(
        Path::new("/sys/class/block").join(booted.file_name().unwrap_or_default()),
    )
    .ok()
    .and_then(|p| p.parent().map(Path::to_path_buf))
    .ok_or_else(|| SlotsError::BadImage(format!("no disk holds {}", booted.display())))?;
    let siblings: Vec<(PathBuf, String)> = std::fs::read_dir(&disk)
        .map_err(io(format!("failed to read {}", disk.display())))?
        .flatten()
        .filter(|e| e.path().join("partition").exists())
        .map(|e| Path::new("/dev").join(e.file_name()))
        .filter_map(|p| entry(&p, "PART_ENTRY_NAME").map(|n| (p, n)))
        .collect();
    let named = |suffix: &str| {
        siblings
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(&format!("{stem}{sep}{suffix}")))
            .map(|(p, _)| p.clone())
    };
    let missing =
        |s: &str| SlotsError::BadImage(format!("no partition named {stem}{sep}{s} beside {name}"));
    Ok(Derived {
        a: named("a").ok_or_else(|| missing("a"))?,
        b: named("b").ok_or_else(|| missing("b"))?,
        recovery: named("recovery"),
    })
}
