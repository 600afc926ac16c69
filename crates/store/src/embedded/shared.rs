//! What the reader side and the writer of the embedded store share: the open file (or none
//! while it is being reopened after a failure), the reserve of space kept beside it, and what
//! the store says of its health.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use redb::Database;

use super::{record::Damage, EmbeddedOptions};
use crate::{DamagedRecord, StoreError};

/// What the reader side and the writer share: the open file (or none while it is being
/// reopened) and the store's health.
pub(crate) struct Shared {
    pub(super) opts: EmbeddedOptions,
    pub(super) db: RwLock<Option<Arc<Database>>>,
    pub(super) failure: Mutex<Option<String>>,
    pub(super) damaged: Mutex<BTreeMap<String, DamagedRecord>>,
}

impl Shared {
    pub(super) fn is_open(&self) -> bool {
        self.db.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    pub(super) fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| self.unavailable())
    }

    pub(super) fn unavailable(&self) -> StoreError {
        let why = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| "the store file is closed".into());
        StoreError::Unavailable(format!("the store failed: {why}; reopening it"))
    }

    pub(super) fn fail(&self, why: &str) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
        // Readers holding the old handle let go of it when their transaction ends.
        self.db.write().unwrap_or_else(|e| e.into_inner()).take();
    }

    pub(super) fn reserve_path(&self) -> Option<PathBuf> {
        self.opts.path.as_ref().map(|p| {
            let mut s = p.clone().into_os_string();
            s.push(".reserve");
            PathBuf::from(s)
        })
    }

    /// Keeps `reserve_bytes` in a file beside the store while the disk has room for it twice.
    pub(super) fn ensure_reserve(&self) {
        let Some(path) = self.reserve_path() else {
            return;
        };
        let want = self.opts.reserve_bytes;
        if want == 0 || std::fs::metadata(&path).is_ok_and(|m| m.len() >= want) {
            return;
        }
        if free_bytes(&path) < want.saturating_mul(2) {
            return;
        }
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&path)?;
            let zeros = vec![0u8; 1 << 20];
            let mut left = want;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                f.write_all(&zeros[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&path);
            tracing::warn!(error = %e, "failed to set the store's reserve aside");
        }
    }

    /// Gives the reserve back and opens the file again; true when it is open.
    pub(super) fn reopen(&self) -> bool {
        if self.is_open() {
            return true;
        }
        let Some(path) = self.opts.path.clone() else {
            return false;
        };
        if let Some(r) = self.reserve_path() {
            if std::fs::remove_file(&r).is_ok() {
                tracing::warn!("gave the store's reserve back to the disk");
            }
        }
        let mut builder = Database::builder();
        builder.set_cache_size(self.opts.cache_size);
        match builder.create(&path) {
            Ok(db) => {
                *self.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = None;
                tracing::info!(path = %path.display(), "the store file is open again");
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "the store file does not open yet");
                false
            }
        }
    }

    /// Records a record found damaged after open; the error to return for it.
    pub(super) fn damaged(&self, key: &str, d: &Damage) -> StoreError {
        tracing::error!(key, reason = %d, "a stored object is damaged");
        self.damaged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                key.to_string(),
                DamagedRecord {
                    key: key.to_string(),
                    reason: d.to_string(),
                    quarantined: false,
                },
            );
        StoreError::Internal(format!("stored object {key} is damaged: {d}"))
    }
}

/// Free bytes of the filesystem holding `path` (0 when unknown).
fn free_bytes(path: &Path) -> u64 {
    let dir = path.parent().unwrap_or(Path::new("."));
    // The field types differ between 32- and 64-bit targets.
    #[allow(clippy::useless_conversion)]
    nix::sys::statvfs::statvfs(dir)
        .map(|s| u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
        .unwrap_or(0)
}
