//! Records that survive a power cut: written to a temporary file beside the target, synced,
//! renamed over it, and the directory synced; read back as JSON. A record is either its old or
//! its new content, never a mix.

use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use aos_api::UpdateStep;
use chrono::{DateTime, Utc};

use serde::{de::DeserializeOwned, Serialize};

use crate::SlotsError;

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SlotsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp)
            .map_err(io(format!("failed to create {}", tmp.display())))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io(format!("failed to write {}", tmp.display())))?;
    }
    std::fs::rename(&tmp, path).map_err(io(format!("failed to rename to {}", path.display())))?;
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), SlotsError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(format!("failed to sync {}", dir.display())))
}

/// Writes `value` as JSON to `path` atomically.
pub fn save<T: Serialize>(path: &Path, value: &T) -> Result<(), SlotsError> {
    let bytes = serde_json::to_vec_pretty(value)?;
    write_atomic(path, &bytes)
}

/// Reads the JSON record at `path`; `None` when there is none.
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, SlotsError> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).map_err(|e| {
            SlotsError::Record(format!("{} does not read: {e}", path.display()))
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("failed to read {}", path.display()))(e)),
    }
}

/// Removes the record at `path` durably; fine if there is none.
pub fn remove(path: &Path) -> Result<(), SlotsError> {
    match std::fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("failed to remove {}", path.display()))(e)),
    }
}

/// Adds `step` at `at` to `steps`; the previous step's duration ends there.
pub fn push_step(steps: &mut Vec<UpdateStep>, step: &str, at: DateTime<Utc>, message: &str) {
    if let Some(last) = steps.last_mut() {
        if last.duration_ms.is_none() {
            last.duration_ms = Some((at - last.at).num_milliseconds().max(0) as u64);
        }
    }
    steps.push(UpdateStep {
        step: step.into(),
        at,
        duration_ms: None,
        message: message.into(),
    });
}

/// The two records of an OS runtime in one directory: its state (`state.json`) and the pending
/// update (`pending.json`).
pub struct Records<S, P> {
    dir: PathBuf,
    kinds: PhantomData<fn() -> (S, P)>,
}

impl<S, P> Clone for Records<S, P> {
    fn clone(&self) -> Self {
        Records {
            dir: self.dir.clone(),
            kinds: PhantomData,
        }
    }
}

impl<S, P> std::fmt::Debug for Records<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Records").field("dir", &self.dir).finish()
    }
}

impl<S: Serialize + DeserializeOwned, P: Serialize + DeserializeOwned> Records<S, P> {
    /// The records under `dir` (made if missing).
    pub fn new(dir: &Path) -> Result<Self, SlotsError> {
        std::fs::create_dir_all(dir).map_err(io(format!("failed to create {}", dir.display())))?;
        Ok(Records {
            dir: dir.to_path_buf(),
            kinds: PhantomData,
        })
    }

    /// The state.
    pub fn state(&self) -> Result<Option<S>, SlotsError> {
        load(&self.dir.join("state.json"))
    }

    /// Writes the state.
    pub fn save_state(&self, s: &S) -> Result<(), SlotsError> {
        save(&self.dir.join("state.json"), s)
    }

    /// The pending update.
    pub fn pending(&self) -> Result<Option<P>, SlotsError> {
        load(&self.dir.join("pending.json"))
    }

    /// Writes the pending update.
    pub fn save_pending(&self, p: &P) -> Result<(), SlotsError> {
        save(&self.dir.join("pending.json"), p)
    }

    /// Forgets the pending update.
    pub fn clear_pending(&self) -> Result<(), SlotsError> {
        remove(&self.dir.join("pending.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_a_rewrite_replaces_it_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pending.json");
        assert_eq!(load::<Vec<u32>>(&p).unwrap(), None);
        save(&p, &vec![1, 2, 3]).unwrap();
        save(&p, &vec![4]).unwrap();
        assert_eq!(load::<Vec<u32>>(&p).unwrap(), Some(vec![4]));
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
        remove(&p).unwrap();
        remove(&p).unwrap();
        assert_eq!(load::<Vec<u32>>(&p).unwrap(), None);
    }
}
