//! The content-addressed layer store under `<data>/images`:
//! - `blobs/sha256/<hex>`: verified blobs (component images, and service layers until converted);
//!   `<hex>.partial` while downloading (kept across restarts for resume);
//! - `layers/sha256/<diffIdHex>.sqfs`: a service layer as a squashfs image, published by an atomic
//!   rename only after every check passed; `<diffIdHex>.json`: its record (written last);
//!   `<diffIdHex>/`: where it is mounted read-only for overlayfs;
//! - `meta/sha256/<hex>`: manifests and configs of resolved items (small, verified);
//! - `tmp/`: work files, emptied at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::{digest_hex, ImageError};

/// What is known of a published layer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LayerRecord {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    /// Bytes of the compressed blob.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub unpacked_size: u64,
    /// Bytes of the squashfs image on disk.
    pub image_size: u64,
    /// `sha256:` of the squashfs image: the at-rest digest re-checked by the integrity pass.
    pub at_rest_digest: String,
    pub files: u64,
    /// Directories without an entry of their own in the layer (see [`crate::stack`]).
    #[serde(default)]
    pub implicit_dirs: Vec<String>,
    /// What the stack check needs of the layer (see [`crate::stack::check_stack`]).
    #[serde(default)]
    pub index: crate::tarfilter::LayerIndex,
}

#[derive(Clone, Debug)]
pub struct LayerStore {
    root: PathBuf,
}

fn io(ctx: impl Into<String>) -> impl FnOnce(std::io::Error) -> ImageError {
    let ctx = ctx.into();
    move |e| ImageError::io(ctx, e)
}

fn hex_of(digest: &str) -> Result<&str, ImageError> {
    digest_hex(digest)
        .ok_or_else(|| ImageError::InvalidManifest(format!("{digest:?} is not a sha256 digest")))
}

/// Whether `dir` is a mount point, from `/proc/self/mountinfo`.
pub fn is_mounted(dir: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = dir.to_string_lossy();
    info.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}

/// Mount points at or below `prefix`, deepest first.
pub fn mounts_under(prefix: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(prefix))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

fn run(cmd: &mut Command, what: &str) -> Result<(), ImageError> {
    let out = cmd.output().map_err(|e| ImageError::Mount {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ImageError::Mount {
            what: what.to_string(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Unmounts a mount point (lazily if it is busy), by the system call: no `umount` process per
/// mount (a loop device that `mount -o loop` set up clears itself with its last mount).
pub fn unmount(dir: &Path) -> Result<(), ImageError> {
    use nix::errno::Errno;
    use nix::mount::{umount2, MntFlags};
    if !is_mounted(dir) {
        return Ok(());
    }
    let failed = |e: Errno| ImageError::Mount {
        what: dir.display().to_string(),
        message: format!("umount: {e}"),
    };
    match umount2(dir, MntFlags::empty()) {
        Ok(()) => Ok(()),
        // Gone meanwhile.
        Err(Errno::EINVAL | Errno::ENOENT) if !is_mounted(dir) => Ok(()),
        Err(_) => umount2(dir, MntFlags::MNT_DETACH).map_err(failed),
    }
}

impl LayerStore {
    /// Opens (creating) the store at `root` and empties its work directory.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let s = LayerStore { root: root.into() };
        for d in [
            s.root.join("blobs/sha256"),
            s.root.join("layers/sha256"),
            s.root.join("meta/sha256"),
        ] {
            std::fs::create_dir_all(&d).map_err(io(format!("failed to create {}", d.display())))?;
        }
        let tmp = s.root.join("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(format!("failed to create {}", tmp.display())))?;
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    pub fn partial_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("blobs/sha256")
            .join(format!("{}.partial", hex_of(digest)?)))
    }

    pub fn image_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("layers/sha256")
            .join(format!("{}.sqfs", hex_of(diff_id)?)))
    }

    fn record_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self
            .root
            .join("layers/sha256")
            .join(format!("{}.json", hex_of(diff_id)?)))
    }

    pub fn mount_path(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.root.join("layers/sha256").join(hex_of(diff_id)?))
    }

    /// A fresh path in the work directory (unique within this process).
    pub fn tmp_path(&self, name: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{name}.{}.{n}", std::process::id()))
    }

    /// Bytes of squashfs image per byte of compressed blob, measured on the layers of at least
    /// 1 MiB installed here (smaller ones are mostly format overhead); `None` before there are
    /// any.
    pub fn conversion_ratio(&self) -> Option<f64> {
        let (mut blobs, mut images) = (0u64, 0u64);
        for d in self.layers_on_disk() {
            if let Some(r) = self.record(&d).filter(|r| r.size >= 1 << 20) {
                blobs += r.size;
                images += r.image_size;
            }
        }
        (blobs > 0).then(|| images as f64 / blobs as f64)
    }

    /// The record of a published layer, if it is complete.
    pub fn record(&self, diff_id: &str) -> Option<LayerRecord> {
        let text = std::fs::read(self.record_path(diff_id).ok()?).ok()?;
        let rec: LayerRecord = serde_json::from_slice(&text).ok()?;
        self.image_path(diff_id).ok()?.exists().then_some(rec)
    }

    /// Publishes a converted image: fsync, rename into place, then the record (the layer exists
    /// only once its record does).
    pub fn publish(&self, tmp_image: &Path, record: &LayerRecord) -> Result<(), ImageError> {
        let image = self.image_path(&record.diff_id)?;
        std::fs::File::open(tmp_image)
            .and_then(|f| f.sync_all())
            .map_err(io(format!("failed to sync {}", tmp_image.display())))?;
        std::fs::rename(tmp_image, &image)
            .map_err(io(format!("failed to publish {}", image.display())))?;
        let rec_tmp = self.tmp_path(&format!("{}.json", hex_of(&record.diff_id)?));

        let bytes = serde_json::to_vec_pretty(record).expect("a record serializes");
        std::fs::write(&rec_tmp, bytes)
            .and_then(|()| std::fs::File::open(&rec_tmp)?.sync_all())
            .map_err(io("failed to write the layer record"))?;
        std::fs::rename(&rec_tmp, self.record_path(&record.diff_id)?)
            .map_err(io("failed to publish the layer record"))?;
        if let Ok(d) = std::fs::File::open(self.root.join("layers/sha256")) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Mounts a published layer read-only at its mount path (idempotent).
    pub fn mount(&self, diff_id: &str) -> Result<PathBuf, ImageError> {
        let dir = self.mount_path(diff_id)?;
        if is_mounted(&dir) {
            return Ok(dir);
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("failed to create {}", dir.display())))?;
        let image = self.image_path(diff_id)?;
        run(
            Command::new("mount")
                .args(["-t", "squashfs", "-o", "loop,ro,nodev,nosuid"])
                .arg(&image)
                .arg(&dir),
            &image.display().to_string(),
        )?;
        Ok(dir)
    }

    /// Unmounts and deletes a layer's image, record and mount point.
    pub fn remove_layer(&self, diff_id: &str) -> Result<(), ImageError> {
        let dir = self.mount_path(diff_id)?;
        unmount(&dir)?;
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_file(self.record_path(diff_id)?);
        match std::fs::remove_file(self.image_path(diff_id)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("failed to remove a layer image", e))
            }
            _ => Ok(()),
        }
    }

    /// Deletes a blob and its partial download.
    pub fn remove_blob(&self, digest: &str) -> Result<(), ImageError> {
        for p in [self.blob_path(digest)?, self.partial_path(digest)?] {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(ImageError::io(
                        format!("failed to remove {}", p.display()),
                        e,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Re-hashes a published image and compares it with its record.
    pub fn verify_at_rest(&self, diff_id: &str) -> Result<bool, ImageError> {
        let Some(rec) = self.record(diff_id) else {
            return Ok(false);
        };
        let (digest, _) = crate::convert::file_digest(&self.image_path(diff_id)?)?;
        Ok(digest == rec.at_rest_digest)
    }

    /// Keeps a small verified document (manifest, config) by digest, durably (fsync, rename,
    /// fsync of the directory): an Item's status names it once this returns. A copy already
    /// there is kept only if it still hashes to its digest (a power cut can leave an empty or
    /// torn file behind a name).
    pub fn put_meta(&self, digest: &str, bytes: &[u8]) -> Result<(), ImageError> {
        crate::oci::verify("a document", bytes, digest)?;
        if self.meta(digest).is_some() {
            return Ok(());
        }
        let dir = self.root.join("meta/sha256");
        let path = dir.join(hex_of(digest)?);
        let tmp = self.tmp_path(hex_of(digest)?);
        std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .map_err(io("failed to write a document"))?;
        std::fs::rename(&tmp, &path).map_err(io("failed to store a document"))?;
        std::fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io("failed to sync the documents' directory"))
    }

    /// A document kept with [`LayerStore::put_meta`], if it is there whole (it hashes to its
    /// digest).
    pub fn meta(&self, digest: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.root.join("meta/sha256").join(hex_of(digest).ok()?)).ok()?;
        crate::oci::verify("a document", &bytes, digest).ok()?;
        Some(bytes)
    }

    pub fn remove_meta(&self, digest: &str) -> Result<(), ImageError> {
        match std::fs::remove_file(self.root.join("meta/sha256").join(hex_of(digest)?)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ImageError::io("failed to remove a document", e))
            }
            _ => Ok(()),
        }
    }

    /// Digests of the documents on disk.
    pub fn metas_on_disk(&self) -> Vec<String> {
        self.list("meta/sha256", |n| Some(n.to_string()))
    }

    /// Digests (`sha256:…`) of the blobs on disk, complete or partial.
    pub fn blobs_on_disk(&self) -> Vec<String> {
        self.list("blobs/sha256", |n| {
            Some(n.trim_end_matches(".partial").to_string())
        })
    }

    /// Diff ids of the layers on disk (images, records or mount points).
    pub fn layers_on_disk(&self) -> Vec<String> {
        self.list("layers/sha256", |n| {
            Some(
                n.trim_end_matches(".sqfs")
                    .trim_end_matches(".json")
                    .to_string(),
            )
        })
    }

    fn list(&self, dir: &str, name: impl Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.root.join(dir))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| name(&e.file_name().to_string_lossy()))
            .map(|h| format!("sha256:{h}"))
            .filter(|d| digest_hex(d).is_some())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
