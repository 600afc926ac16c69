//! [`EfiDir`]: EFI variables as files `Name-GUID` holding 4 bytes of attributes then the data,
//! on efivarfs (`/sys/firmware/efi/efivars`) or on a plain directory of the same format. On
//! efivarfs a variable is written with one `write` (the kernel takes each write as a whole
//! variable) after clearing the immutable flag the kernel sets; on a plain directory through a
//! temporary file and a rename, so that a crash never leaves half a variable.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{EfiVars, GLOBAL_GUID, NV_BS_RT};
use crate::SlotsError;

/// `EFIVARFS_MAGIC` from `statfs`.
const EFIVARFS_MAGIC: i64 = 0xde5e81e4;

/// EFI variables in a directory (see the module documentation).
#[derive(Clone, Debug)]
pub struct EfiDir {
    dir: PathBuf,
    efivarfs: bool,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> SlotsError {
    move |source| SlotsError::Io { what, source }
}

impl EfiDir {
    /// The variables under `dir` (efivarfs is detected).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SlotsError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(SlotsError::Efi(format!(
                "{} is not a directory of EFI variables (does this machine boot with EFI?)",
                dir.display()
            )));
        }
        // The field's type differs between targets (i64 here, u32 on 32-bit arm).
        #[allow(clippy::unnecessary_cast)]
        let efivarfs = nix::sys::statfs::statfs(&dir)
            .map(|s| s.filesystem_type().0 as i64 == EFIVARFS_MAGIC)
            .unwrap_or(false);
        Ok(EfiDir { dir, efivarfs })
    }

    /// Where the variables are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}-{GLOBAL_GUID}"))
    }

    /// Drops the immutable flag efivarfs puts on variables (a no-op elsewhere).
    fn unlock(&self, p: &Path) {
        if self.efivarfs && p.exists() {
            // The project forbids unsafe code, so not the FS_IOC_SETFLAGS ioctl itself:
            // e2fsprogs' chattr does it (a device with the boot runtime needs e2fsprogs).
            match std::process::Command::new("chattr")
                .arg("-i")
                .arg(p)
                .output()
            {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    tracing::warn!(var = %p.display(), error = %String::from_utf8_lossy(&o.stderr).trim(), "chattr -i failed")
                }
                Err(e) => {
                    tracing::warn!(var = %p.display(), error = %e, "failed to run chattr (is e2fsprogs installed?)")
                }
            }
        }
    }
}

impl EfiVars for EfiDir {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, SlotsError> {
        let p = self.path(name);
        match std::fs::read(&p) {
            Ok(b) if b.len() >= 4 => Ok(Some(b[4..].to_vec())),
            Ok(_) => Err(SlotsError::Efi(format!(
                "{} is shorter than its attributes",
                p.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("failed to read {}", p.display()))(e)),
        }
    }

    fn set(&self, name: &str, data: &[u8]) -> Result<(), SlotsError> {
        let p = self.path(name);
        let mut whole = NV_BS_RT.to_le_bytes().to_vec();
        whole.extend_from_slice(data);
        if self.efivarfs {
            self.unlock(&p);
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&p)
                .map_err(io(format!("failed to open {}", p.display())))?;
            let n = f
                .write(&whole)
                .map_err(io(format!("failed to write {}", p.display())))?;
            if n != whole.len() {
                return Err(SlotsError::Efi(format!(
                    "{name}: a short write ({n} bytes)"
                )));
            }
            return Ok(());
        }
        crate::record::write_atomic(&p, &whole)
    }

    fn delete(&self, name: &str) -> Result<(), SlotsError> {
        let p = self.path(name);
        self.unlock(&p);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("failed to delete {}", p.display()))(e)),
        }
    }

    fn names(&self) -> Result<Vec<String>, SlotsError> {
        let suffix = format!("-{GLOBAL_GUID}");
        let mut v = Vec::new();
        for e in std::fs::read_dir(&self.dir)
            .map_err(io(format!("failed to list {}", self.dir.display())))?
        {
            let e = e.map_err(io(format!("failed to list {}", self.dir.display())))?;
            if let Some(n) = e.file_name().to_string_lossy().strip_suffix(&suffix) {
                v.push(n.to_string());
            }
        }
        v.sort();
        Ok(v)
    }
}
