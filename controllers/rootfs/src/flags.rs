//! The action files shared with the boot side, in the work directory: `do_update` and
//! `do_apply` (content: `full` or `incremental`), `updated` (written by the boot side when the
//! trial root is up), `failed` (the boot side's reason for refusing an image), and the staged
//! `image.squashfs` with the `preserve` list. Each is written whole (temporary file, fsync,
//! rename, fsync of the directory).

use std::path::PathBuf;

use aos_slots::record::{sync_dir, write_atomic};
use aos_slots::SlotsError;

/// Staged image.
pub const IMAGE: &str = "image.squashfs";
/// The agent asks for a trial boot.
pub const DO_UPDATE: &str = "do_update";
/// The boot side mounted the trial root.
pub const UPDATED: &str = "updated";
/// The agent confirms the trial: apply it.
pub const DO_APPLY: &str = "do_apply";
/// The boot side refused the image (its reason).
pub const FAILED: &str = "failed";
/// Paths a full update keeps.
pub const PRESERVE: &str = "preserve";

/// The action files as found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    /// `do_update` is there.
    pub do_update: bool,
    /// `updated` is there.
    pub updated: bool,
    /// `do_apply` is there.
    pub do_apply: bool,
    /// `failed` is there, with its text.
    pub failed: Option<String>,
}

impl Flags {
    /// Whether any action file is there.
    pub fn any(&self) -> bool {
        self.do_update || self.updated || self.do_apply || self.failed.is_some()
    }
}

/// The work directory's files.
#[derive(Clone, Debug)]
pub struct WorkDir(pub PathBuf);

impl WorkDir {
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Reads the action files.
    pub fn flags(&self) -> Flags {
        Flags {
            do_update: self.path(DO_UPDATE).exists(),
            updated: self.path(UPDATED).exists(),
            do_apply: self.path(DO_APPLY).exists(),
            failed: std::fs::read_to_string(self.path(FAILED))
                .ok()
                .map(|t| t.trim().to_string()),
        }
    }

    /// Writes an action file whole.
    pub fn set(&self, name: &str, text: &str) -> Result<(), SlotsError> {
        write_atomic(&self.path(name), format!("{text}\n").as_bytes())
    }

    /// Removes files (missing ones are fine), then syncs the directory.
    pub fn remove(&self, names: &[&str]) -> Result<(), SlotsError> {
        for n in names {
            match std::fs::remove_file(self.path(n)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(SlotsError::Io {
                        what: format!("failed to remove {}", self.path(n).display()),
                        source,
                    })
                }
            }
        }
        sync_dir(&self.0)
    }

    /// Where the staged image goes.
    pub fn image(&self) -> PathBuf {
        self.path(IMAGE)
    }
}
