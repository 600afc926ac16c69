//! Stacking layers: each layer is an independent image, so a directory a layer holds only
//! implicitly (a parent of its entries, without an entry of its own) carries default attributes
//! (0755, root). In an overlay the uppermost copy of a directory decides its attributes, so such
//! a directory would hide the mode and owner a lower layer gave it. [`fixups`] finds, for each
//! implicit directory, the attributes the stack should show (those of the nearest lower layer
//! that has the directory explicitly, unless a whiteout or an opaque directory cuts it off), and
//! [`write_fixups`] makes a small directory tree to put on top of the layers.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::ImageError;

/// One layer of a stack: where it is mounted and which directories it holds implicitly.
#[derive(Clone, Debug)]
pub struct StackLayer {
    pub root: PathBuf,
    pub implicit_dirs: HashSet<String>,
}

/// Attributes a directory of the merged tree must have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirFix {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device() && m.rdev() == 0
}

fn is_opaque(p: &Path) -> bool {
    xattr::get(p, "trusted.overlay.opaque")
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
}

/// Whether layer `l` cuts `path` off from the layers below it: a whiteout of the path or of an
/// ancestor, or an opaque ancestor (or the path itself, for its contents only: not here).
fn cuts_off(l: &StackLayer, path: &str) -> bool {
    let mut prefix = PathBuf::new();
    let parts: Vec<&str> = path.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(part);
        let full = l.root.join(&prefix);
        match std::fs::symlink_metadata(&full) {
            Ok(m) if is_whiteout(&m) => return true,
            Ok(m) if m.is_dir() && i + 1 < parts.len() && is_opaque(&full) => return true,
            _ => {}
        }
    }
    false
}

/// The directories whose attributes must be corrected, for layers given lowest first.
pub fn fixups(layers: &[StackLayer]) -> Vec<DirFix> {
    let mut out = Vec::new();
    let mut done = HashSet::new();
    for (top, layer) in layers.iter().enumerate().rev() {
        for path in &layer.implicit_dirs {
            if !done.insert(path.clone()) {
                continue;
            }
            // Only the uppermost layer holding the directory matters.
            let above = layers[top + 1..]
                .iter()
                .any(|l| l.root.join(path).is_dir() || cuts_off(l, path));
            if above {
                continue;
            }
            for lower in layers[..top].iter().rev() {
                let p = lower.root.join(path);
                let Ok(m) = std::fs::symlink_metadata(&p) else {
                    if cuts_off(lower, path) {
                        break;
                    }
                    continue;
                };
                if !m.is_dir() {
                    break;
                }
                if !lower.implicit_dirs.contains(path) {
                    out.push(DirFix {
                        path: path.clone(),
                        mode: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                    });
                    break;
                }
                if is_opaque(&p) || cuts_off(lower, path) {
                    break;
                }
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// Creates the fixed directories under `dir` (parents first, then attributes deepest first).
pub fn write_fixups(dir: &Path, fixes: &[DirFix]) -> Result<(), ImageError> {
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e| ImageError::io(format!("failed to prepare {p}"), e)
    };
    for f in fixes {
        let p = dir.join(&f.path);
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    for f in fixes.iter().rev() {
        let p = dir.join(&f.path);
        std::os::unix::fs::chown(&p, Some(f.uid), Some(f.gid)).map_err(io(&p))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(f.mode)).map_err(io(&p))?;
    }
    Ok(())
}
