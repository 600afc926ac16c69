//! Stacking layers: each layer is an independent image, so a directory a layer holds only
//! implicitly (a parent of its entries, without an entry of its own) carries default attributes
//! (0755, root). In an overlay the uppermost copy of a directory decides its attributes, so such
//! a directory would hide the mode and owner a lower layer gave it. [`fixups`] finds, for each
//! implicit directory, the attributes the stack should show (those of the nearest lower layer
//! that has the directory explicitly, unless a whiteout or an opaque directory cuts it off), and
//! [`write_fixups`] makes a small directory tree to put on top of the layers.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::tarfilter::LayerIndex;
use crate::ImageError;

/// One layer of a stack: where it is mounted and which directories it holds implicitly.
#[derive(Clone, Debug)]
pub struct StackLayer {
    pub root: PathBuf,
    pub implicit_dirs: HashSet<String>,
}

/// Refuses a stack (layers lowest first) in which a layer places entries under a path that a
/// lower layer left a symlink: overlayfs would follow it, out of the image. A layer may
/// replace such a symlink with a directory of its own; whiteouts and opaque directories take
/// lower symlinks away.
pub fn check_stack(layers: &[&LayerIndex]) -> Result<(), String> {
    let mut links: BTreeSet<String> = BTreeSet::new();
    for (i, l) in layers.iter().enumerate() {
        if let Some(p) = l
            .parents
            .iter()
            .find(|p| links.contains(*p) && !l.dirs.contains(*p))
        {
            return Err(format!(
                "layer {} writes under {p:?}, which a lower layer holds as a symlink",
                i + 1
            ));
        }
        let under = |root: &str, p: &str| {
            p.len() > root.len() && p.starts_with(root) && p.as_bytes()[root.len()] == b'/'
        };
        for w in &l.whiteouts {
            links.retain(|s| s != w && !under(w, s));
        }
        for o in &l.opaque {
            links.retain(|s| !under(o, s));
        }
        for d in &l.dirs {
            links.remove(d);
        }
        links.extend(l.symlinks.iter().cloned());
    }
    Ok(())
}

/// The metadata of `rel` inside `root` without following a symlink on the way: `None` when a
/// component is missing, or is a symlink or a file that the path continues under (a path that
/// would lead out of the layer leads nowhere).
pub fn meta_in(root: &Path, rel: &str) -> Option<std::fs::Metadata> {
    let parts: Vec<&str> = rel.split('/').filter(|p| !p.is_empty()).collect();
    let mut cur = root.to_path_buf();
    let mut meta = None;
    for (i, part) in parts.iter().enumerate() {
        cur.push(part);
        let m = std::fs::symlink_metadata(&cur).ok()?;
        if i + 1 < parts.len() && !m.is_dir() {
            return None;
        }
        meta = Some(m);
    }
    meta
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
            // The path does not go on in this layer past anything but a directory.
            Ok(m) if !m.is_dir() => return false,
            Err(_) => return false,
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
                .any(|l| meta_in(&l.root, path).is_some_and(|m| m.is_dir()) || cuts_off(l, path));
            if above {
                continue;
            }
            for lower in layers[..top].iter().rev() {
                let p = lower.root.join(path);
                let Some(m) = meta_in(&lower.root, path) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn index(symlinks: &[&str], parents: &[&str], dirs: &[&str], whiteouts: &[&str]) -> LayerIndex {
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        LayerIndex {
            symlinks: set(symlinks),
            parents: set(parents),
            dirs: set(dirs),
            whiteouts: set(whiteouts),
            ..LayerIndex::default()
        }
    }

    #[test]
    fn a_layer_may_not_write_under_a_lower_layers_symlink() {
        let lower = index(&["lnk"], &[], &[], &[]);
        let writes = index(&[], &["lnk", "lnk/sub"], &[], &[]);
        let e = check_stack(&[&lower, &writes]).unwrap_err();
        assert!(e.contains("layer 2 writes under \"lnk\""), "{e}");
        // Replaced by a directory of its own, or taken away by a whiteout below: fine.
        let replaces = index(&[], &["lnk"], &["lnk"], &[]);
        assert!(check_stack(&[&lower, &replaces]).is_ok());
        let removes = index(&[], &[], &[], &["lnk"]);
        assert!(check_stack(&[&lower, &removes, &writes]).is_ok());
        // A symlink three layers down still counts.
        let other = index(&[], &["x"], &[], &[]);
        assert!(check_stack(&[&lower, &other, &writes]).is_err());
    }

    #[test]
    fn lookups_inside_a_layer_never_follow_a_symlink_out_of_it() {
        let host = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(host.path().join("secret/sub")).unwrap();
        let layer = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(host.path().join("secret"), layer.path().join("a")).unwrap();
        assert!(
            meta_in(layer.path(), "a/sub").is_none(),
            "not through the link"
        );
        assert!(meta_in(layer.path(), "a").is_some_and(|m| m.file_type().is_symlink()));
        std::fs::create_dir(layer.path().join("d")).unwrap();
        assert!(meta_in(layer.path(), "d").is_some_and(|m| m.is_dir()));
        let stack = [
            StackLayer {
                root: layer.path().to_path_buf(),
                implicit_dirs: HashSet::new(),
            },
            StackLayer {
                root: tempfile::tempdir().unwrap().path().to_path_buf(),
                implicit_dirs: ["a/sub".to_string()].into(),
            },
        ];
        assert!(
            fixups(&stack).is_empty(),
            "no attributes taken from the host"
        );
    }
}
