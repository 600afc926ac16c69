//! A slot: a partition (or a file standing for one) that a boot image is written to whole. The
//! image arrives as a gzip file. It is read through once before anything is written (its digest
//! checked, its unpacked size held against the slot's), then written, synced, dropped from the
//! page cache and read back: the slot holds exactly the bytes the image unpacks to, or the
//! update stops with the reason. The active slot is never the target (the controller chooses).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};

use crate::SlotsError;

const CHUNK: usize = 1 << 20;

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

/// What a write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// Bytes written to the slot (the unpacked image).
    pub bytes: u64,
    /// `sha256:` of those bytes, as read back from the slot.
    pub digest: String,
    /// Time spent checking the image, writing it, and reading it back.
    pub check: Duration,
    /// Writing (with the sync).
    pub write: Duration,
    /// Reading back.
    pub verify: Duration,
}

/// A slot device (see the module documentation).
#[derive(Clone, Debug)]
pub struct SlotDevice {
    path: PathBuf,
}

/// Reads `r` whole, hashing and counting; the hash as `sha256:hex`.
fn digest_of(mut r: impl Read, limit: Option<u64>) -> Result<(String, u64), std::io::Error> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
        if limit.is_some_and(|l| n > l) {
            break;
        }
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}

impl SlotDevice {
    /// The slot at `path` (a block device or a regular file).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SlotDevice { path: path.into() }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size in bytes.
    pub fn size(&self) -> Result<u64, SlotsError> {
        let mut f = std::fs::File::open(&self.path)
            .map_err(io(format!("failed to open {}", self.path.display())))?;
        f.seek(SeekFrom::End(0))
            .map_err(io(format!("failed to size {}", self.path.display())))
    }

    /// Writes the gzip image `blob`, whose file has the digest `digest`, to the slot (see the
    /// module documentation).
    pub fn write_gzip(&self, blob: &Path, digest: &str) -> Result<Written, SlotsError> {
        let started = Instant::now();
        let open =
            || std::fs::File::open(blob).map_err(io(format!("failed to open {}", blob.display())));
        let (actual, _) =
            digest_of(open()?, None).map_err(io(format!("failed to read {}", blob.display())))?;
        if actual != digest {
            return Err(SlotsError::Mismatch {
                what: format!("the image {}", blob.display()),
                expected: digest.into(),
                actual,
            });
        }
        let have = self.size()?;
        let (_, need) = digest_of(GzDecoder::new(open()?), Some(have)).map_err(|e| {
            SlotsError::BadImage(format!("the image is not a whole gzip stream: {e}"))
        })?;
        if need > have {
            return Err(SlotsError::TooLarge { need, have });
        }
        let check = started.elapsed();

        let started = Instant::now();
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(io(format!(
                "failed to open {} for writing",
                self.path.display()
            )))?;
        let mut gz = GzDecoder::new(open()?);
        let mut h = Sha256::new();
        let mut buf = vec![0u8; CHUNK];
        let mut bytes = 0u64;
        loop {
            let k = gz
                .read(&mut buf)
                .map_err(|e| SlotsError::BadImage(format!("the image does not unpack: {e}")))?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            out.write_all(&buf[..k])
                .map_err(io(format!("failed to write {}", self.path.display())))?;
            bytes += k as u64;
        }
        out.sync_all()
            .map_err(io(format!("failed to sync {}", self.path.display())))?;
        let written = format!("sha256:{}", hex::encode(h.finalize()));
        let write = started.elapsed();

        let started = Instant::now();
        // Read what the device holds, not what the page cache remembers.
        let _ = nix::fcntl::posix_fadvise(
            &out,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        let back = std::fs::File::open(&self.path)
            .map_err(io(format!("failed to open {}", self.path.display())))?;
        let (read, _) = digest_of(back.take(bytes), None)
            .map_err(io(format!("failed to read {} back", self.path.display())))?;
        if read != written {
            return Err(SlotsError::Mismatch {
                what: format!("{} read back", self.path.display()),
                expected: written,
                actual: read,
            });
        }
        Ok(Written {
            bytes,
            digest: read,
            check,
            write,
            verify: started.elapsed(),
        })
    }

    /// The first line of `file` inside the slot's filesystem (mounted read-only for the read);
    /// `None` when the slot holds no filesystem that mounts or no such file.
    pub fn read_version(&self, file: &str) -> Result<Option<String>, SlotsError> {
        let dir = tempfile_dir()?;
        let mut cmd = std::process::Command::new("mount");
        cmd.arg("-o");
        if self.path.is_file() {
            cmd.arg("ro,loop,nodev,nosuid,noexec");
        } else {
            cmd.arg("ro,nodev,nosuid,noexec");
        }
        let out = cmd
            .arg(&self.path)
            .arg(&dir)
            .output()
            .map_err(io("failed to run mount".into()))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            tracing::debug!(slot = %self.path.display(), error = %String::from_utf8_lossy(&out.stderr).trim(), "the slot does not mount");
            return Ok(None);
        }
        let text = std::fs::read_to_string(dir.join(file.trim_start_matches('/')));
        let _ = std::process::Command::new("umount").arg(&dir).output();
        let _ = std::fs::remove_dir(&dir);
        Ok(text
            .ok()
            .and_then(|t| t.lines().next().map(|l| l.trim().to_string()))
            .filter(|v| !v.is_empty()))
    }
}

fn tempfile_dir() -> Result<PathBuf, SlotsError> {
    let base = std::env::temp_dir().join(format!(
        "aos-slot-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&base).map_err(io(format!("failed to create {}", base.display())))?;
    Ok(base)
}

pub use crate::partition::partition_of;
