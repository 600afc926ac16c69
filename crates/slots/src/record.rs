//! Records that survive a power cut: written to a temporary file beside the target, synced,
//! renamed over it, and the directory synced; read back as JSON. A record is either its old or
//! its new content, never a mix.

use std::io::Write;
use std::path::Path;

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
