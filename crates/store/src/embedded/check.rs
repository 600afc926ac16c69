//! Opening the file and checking it before anything reads it: an open error says what was found
//! (locked, not a store, damaged, no permission), every record is checked (checksum, JSON, key),
//! damaged ones are moved aside into a quarantine table (kept for inspection, reported in
//! health), records of the first format are rewritten with checksums, and a file much larger
//! than its content is compacted.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{record, EmbeddedOptions, COMPACTED, EVENTS, EVENT_BYTES, META, OBJECTS, REVISION};
use crate::StoreError;

/// Records found damaged, by key, with the raw bytes and why.
pub(super) const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");
const QUARANTINE_REASONS: TableDefinition<&str, &str> = TableDefinition::new("quarantine_reasons");

/// What opening found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The file did not exist, or was empty: this is a new store.
    pub created: bool,
    pub objects: usize,
    /// Records moved to quarantine, now or at an earlier open: (key, why).
    pub quarantined: Vec<(String, String)>,
    /// Records of the first format rewritten with checksums.
    pub migrated: usize,
}

/// Says what redb found when it could not open the file.
pub(super) fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    use redb::{DatabaseError, StorageError};
    let p = path.display();
    let what = match &e {
        DatabaseError::DatabaseAlreadyOpen => {
            format!("{p} is in use by another process (another aosd on this data dir?)")
        }
        DatabaseError::UpgradeRequired(v) => {
            format!("{p} is in an older store format ({v}) that this aosd cannot read")
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            format!("{p} cannot be opened: permission denied")
        }
        DatabaseError::Storage(StorageError::Io(io))
            if io.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            format!("{p} is truncated: it ends before its header does")
        }
        DatabaseError::Storage(StorageError::Corrupted(m)) => {
            format!("{p} is not a store or is damaged: {m}")
        }
        other => format!("failed to open the store {p}: {other}"),
    };
    StoreError::Unavailable(what)
}

/// Opens (or creates) the file.
pub(super) fn open_file(
    path: &Path,
    opts: &EmbeddedOptions,
) -> Result<(Database, bool), StoreError> {
    let created = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    if created && path.exists() {
        // A zero-length file is what a crash during creation (or a wiped file) leaves; redb
        // would refuse it, a new store takes its place.
        let _ = std::fs::remove_file(path);
    }
    let mut builder = Database::builder();
    builder.set_cache_size(opts.cache_size);
    let mut db = builder.create(path).map_err(|e| open_error(path, e))?;
    restrict(path);
    let big = std::fs::metadata(path).map_or(0, |m| m.len()) > opts.compact_above;
    if big {
        match db.compact() {
            Ok(true) => tracing::info!(
                path = %path.display(),
                bytes = std::fs::metadata(path).map_or(0, |m| m.len()),
                "compacted the store file"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "failed to compact the store file"),
        }
    }
    Ok((db, created))
}

/// The store file is the node's secrets too (env values in specs): root's only.
fn restrict(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// Creates the tables, checks every record, quarantines the damaged and migrates the old.
pub(super) fn check(db: &Database, created: bool) -> Result<OpenReport, StoreError> {
    let mut report = OpenReport {
        created,
        ..OpenReport::default()
    };
    let txn = db.begin_write().map_err(internal)?;
    {
        txn.open_table(OBJECTS).map_err(internal)?;
        txn.open_table(EVENTS).map_err(internal)?;
        txn.open_table(META).map_err(internal)?;
        txn.open_table(QUARANTINE).map_err(internal)?;
        txn.open_table(QUARANTINE_REASONS).map_err(internal)?;
    }
    txn.commit().map_err(internal)?;

    let mut damaged = Vec::new();
    let mut legacy = Vec::new();
    {
        let r = db.begin_read().map_err(internal)?;
        let objects = r.open_table(OBJECTS).map_err(internal)?;
        for entry in objects.iter().map_err(internal)? {
            let (k, v) = entry.map_err(internal)?;
            match record::object(k.value(), v.value()) {
                Ok((_, false)) => report.objects += 1,
                Ok((_, true)) => {
                    report.objects += 1;
                    legacy.push((k.value().to_string(), v.value().to_vec()));
                }
                Err(d) => damaged.push((k.value().to_string(), v.value().to_vec(), d)),
            }
        }
    }
    if !damaged.is_empty() || !legacy.is_empty() {
        let txn = db.begin_write().map_err(internal)?;
        {
            let mut objects = txn.open_table(OBJECTS).map_err(internal)?;
            let mut q = txn.open_table(QUARANTINE).map_err(internal)?;
            let mut why = txn.open_table(QUARANTINE_REASONS).map_err(internal)?;
            for (k, bytes, d) in &damaged {
                tracing::error!(key = k, reason = %d, "a stored object is damaged: moved to quarantine");
                q.insert(k.as_str(), bytes.as_slice()).map_err(internal)?;
                why.insert(k.as_str(), d.to_string().as_str())
                    .map_err(internal)?;
                objects.remove(k.as_str()).map_err(internal)?;
            }
            for (k, json) in &legacy {
                objects
                    .insert(k.as_str(), record::seal(json).as_slice())
                    .map_err(internal)?;
            }
            if !legacy.is_empty() {
                // Events of the first format go: watchers list again from here.
                let mut meta = txn.open_table(META).map_err(internal)?;
                let rev = meta
                    .get(REVISION)
                    .map_err(internal)?
                    .map_or(0, |v| v.value());
                txn.open_table(EVENTS)
                    .map_err(internal)?
                    .retain_in(..=rev, |_, _| false)
                    .map_err(internal)?;
                meta.insert(COMPACTED, rev).map_err(internal)?;
                meta.insert(EVENT_BYTES, 0).map_err(internal)?;
            }
        }
        txn.commit().map_err(internal)?;
        report.migrated = legacy.len();
    }
    let r = db.begin_read().map_err(internal)?;
    let why = r.open_table(QUARANTINE_REASONS).map_err(internal)?;
    for entry in why.iter().map_err(internal)? {
        let (k, v) = entry.map_err(internal)?;
        report
            .quarantined
            .push((k.value().to_string(), v.value().to_string()));
    }
    Ok(report)
}
