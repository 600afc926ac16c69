//! Where an instance's `state.dat` and `storage/` live, and what bounds them: a small ext4
//! image of its own (`<instance>/volume.img`, sparse), loop-mounted at `<instance>/volume`, as
//! large as the item's `stateLimit` + `storageLimit` (or the node's default when it sets
//! neither). A full volume fails the instance's writes (ENOSPC), never the node's: no instance
//! fills the data partition beyond its limit. Images are sparse, so the limits of all
//! instances together may exceed the disk (as thin project quotas do); a volume larger than the
//! free space is not made. A node default of 0 keeps unbounded plain directories.
//! The image is made once, resized when the limits change (while the task is stopped), kept
//! across restarts and updates, and removed with the Instance.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::InstanceError;

/// Room ext4 takes for itself, on top of the limits.
const OVERHEAD: u64 = 2 << 20;
/// The smallest volume made (ext4's own floor is near 1 MiB).
const MIN_SIZE: u64 = 8 << 20;

/// The directory of an instance's state and storage, under its instance directory.
pub fn data_dir(instance_dir: &Path) -> PathBuf {
    instance_dir.join("volume")
}

fn image(instance_dir: &Path) -> PathBuf {
    instance_dir.join("volume.img")
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> InstanceError {
    move |source| InstanceError::Io { what, source }
}

fn run(cmd: &mut Command) -> Result<(), InstanceError> {
    let out = cmd.output().map_err(io(format!(
        "failed to run {cmd:?} (is e2fsprogs installed?)"
    )))?;
    if !out.status.success() {
        return Err(InstanceError::Rootfs(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The image size for `limit` bytes of data.
pub fn size_for(limit: u64) -> u64 {
    let with_margin = limit + limit / 32 + OVERHEAD;
    // Whole MiB.
    with_margin.max(MIN_SIZE).div_ceil(1 << 20) << 20
}

/// Makes the data directory ready: a mounted volume of `limit` bytes (made or resized as
/// needed), or a plain directory when `limit` is `None`. State and storage of the layout
/// before volumes (beside it) move in. Returns the directory.
pub fn prepare(instance_dir: &Path, limit: Option<u64>) -> Result<PathBuf, InstanceError> {
    let dir = data_dir(instance_dir);
    std::fs::create_dir_all(&dir).map_err(io(format!("failed to create {}", dir.display())))?;
    let Some(limit) = limit else {
        adopt_old_layout(instance_dir, &dir)?;
        return Ok(dir);
    };
    let img = image(instance_dir);
    let want = size_for(limit);
    let have = std::fs::metadata(&img).map_or(0, |m| m.len());
    if have != want && aos_image::layerstore::is_mounted(&dir) {
        // Resized only here, while no task uses it.
        aos_image::layerstore::unmount(&dir).map_err(|source| InstanceError::Layers {
            what: format!("failed to unmount the volume {}", dir.display()),
            source,
        })?;
    }
    if have == 0 {
        // Volumes are sparse (thin, as project quotas would be): all limits together may
        // exceed the disk, but no one volume larger than what is free is made.
        let free = free_bytes(instance_dir);
        if want > free {
            return Err(InstanceError::Rootfs(format!(
                "a volume of {want} bytes (stateLimit + storageLimit) does not fit: {free} bytes are free"
            )));
        }
        let f = std::fs::File::create(&img)
            .map_err(io(format!("failed to create {}", img.display())))?;
        f.set_len(want)
            .map_err(io(format!("failed to size {}", img.display())))?;
        run(Command::new("mkfs.ext4")
            .args([
                "-q",
                "-F",
                "-m",
                "0",
                "-O",
                "^has_journal",
                "-E",
                "nodiscard",
            ])
            .arg(&img))?;
    } else if have != want {
        resize(&img, have, want)?;
    }
    if !aos_image::layerstore::is_mounted(&dir) {
        run(Command::new("mount")
            .args(["-t", "ext4", "-o", "loop,nodev,nosuid"])
            .arg(&img)
            .arg(&dir))?;
        // The mount's root belongs to root; the instance gets what is inside it.
        let lost = dir.join("lost+found");
        let _ = std::fs::remove_dir(lost);
    }
    adopt_old_layout(instance_dir, &dir)?;
    Ok(dir)
}

fn free_bytes(dir: &Path) -> u64 {
    // The field types differ between 32- and 64-bit targets.
    #[allow(clippy::useless_conversion)]
    nix::sys::statvfs::statvfs(dir)
        .map(|s| u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
        .unwrap_or(u64::MAX)
}

/// Grows, or shrinks when the data fits, an unmounted volume image.
fn resize(img: &Path, have: u64, want: u64) -> Result<(), InstanceError> {
    let blocks = format!("{}K", want >> 10);
    if want > have {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(img)
            .map_err(io(format!("failed to open {}", img.display())))?;
        f.set_len(want)
            .map_err(io(format!("failed to grow {}", img.display())))?;
    }
    run(Command::new("e2fsck").args(["-f", "-p"]).arg(img))?;
    match run(Command::new("resize2fs").arg(img).arg(&blocks)) {
        Ok(()) => {
            if want < have {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(img)
                    .map_err(io(format!("failed to open {}", img.display())))?;
                f.set_len(want)
                    .map_err(io(format!("failed to shrink {}", img.display())))?;
            }
            Ok(())
        }
        // Data larger than the new limit: the volume keeps its size (the usage conditions
        // say it is over).
        Err(e) if want < have => {
            tracing::warn!(image = %img.display(), error = %e, "the volume keeps its size: its data does not fit the new limit");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Moves `state.dat` and `storage/` kept beside the data directory (before volumes) into it.
fn adopt_old_layout(instance_dir: &Path, dir: &Path) -> Result<(), InstanceError> {
    for name in ["state.dat", "storage"] {
        let old = instance_dir.join(name);
        let new = dir.join(name);
        if std::fs::symlink_metadata(&old).is_err() || std::fs::symlink_metadata(&new).is_ok() {
            continue;
        }
        // Across filesystems rename fails: copy, then remove.
        if std::fs::rename(&old, &new).is_err() {
            run(Command::new("cp").arg("-a").arg(&old).arg(&new))?;
            if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            }
            .map_err(io(format!("failed to remove {}", old.display())))?;
        }
    }
    Ok(())
}

/// Unmounts the volume (before the instance directory goes).
pub fn release(instance_dir: &Path) -> Result<(), InstanceError> {
    let dir = data_dir(instance_dir);
    if aos_image::layerstore::is_mounted(&dir) {
        aos_image::layerstore::unmount(&dir).map_err(|source| InstanceError::Layers {
            what: format!("failed to unmount the volume {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_have_room_for_their_limit_and_a_floor() {
        assert_eq!(size_for(4096), MIN_SIZE);
        let s = size_for(256 << 20);
        assert!(s >= (256 << 20) + OVERHEAD && s % (1 << 20) == 0, "{s}");
    }
}
