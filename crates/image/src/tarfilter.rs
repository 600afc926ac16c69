//! Checks every entry of a layer tar and rewrites the stream for the squashfs builder:
//! OCI whiteouts (`.wh.<name>`) become overlayfs whiteouts (character device 0:0), opaque
//! markers (`.wh..wh..opq`) become `trusted.overlay.opaque=y` on their directory, and entries
//! that could escape the layer are refused: absolute paths, `..`, writes through a symlink of the
//! layer, hard links to anything but an earlier file of the layer, device nodes (unless allowed),
//! sparse files. Directory entries are held back and written at the end (the builder creates
//! parents implicitly and takes the later attributes), so that an opaque marker can reach its
//! directory wherever it appears. Memory grows with the number of directories, not the data.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};

use tar::{EntryType, Header};

use crate::ImageError;

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "SCHILY.xattr.trusted.overlay.opaque";

#[derive(Clone, Copy, Debug, Default)]
pub struct FilterOptions {
    /// Let character and block devices through (they are refused by default).
    pub allow_devices: bool,
}

/// What went through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub entries: u64,
    pub files: u64,
    pub file_bytes: u64,
    pub whiteouts: u64,
    pub opaque_dirs: u64,
    /// Directories the layer holds without an entry of their own (parents of entries, opaque
    /// markers): they get default attributes here, and the stack takes theirs from below.
    pub implicit_dirs: Vec<String>,
}

struct DirMeta {
    header: Header,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn hostile(msg: String) -> ImageError {
    ImageError::HostileLayer(msg)
}

/// A relative, normalized path (no `.`, no trailing `/`), or why it is refused.
fn clean_path(raw: &str) -> Result<String, ImageError> {
    if raw.starts_with('/') {
        return Err(hostile(format!("entry {raw:?} has an absolute path")));
    }
    let mut parts = Vec::new();
    for c in raw.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(hostile(format!("entry {raw:?} climbs out with '..'"))),
            c => parts.push(c),
        }
    }
    Ok(parts.join("/"))
}

fn io(e: std::io::Error) -> ImageError {
    ImageError::io("failed to read the layer tar", e)
}

fn out_err(e: std::io::Error) -> ImageError {
    ImageError::io("failed to write to the squashfs builder", e)
}

fn copy_meta(from: &Header, to: &mut Header) -> Result<(), ImageError> {
    to.set_mode(from.mode().map_err(io)?);
    // Some writers leave owner fields empty; that means root.
    to.set_uid(from.uid().unwrap_or(0));
    to.set_gid(from.gid().unwrap_or(0));
    to.set_mtime(from.mtime().unwrap_or(0));
    Ok(())
}

fn xattrs_of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Vec<(String, Vec<u8>)>, ImageError> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().map_err(io)? {
        for ext in exts {
            let ext = ext.map_err(io)?;
            if let Ok(key) = ext.key() {
                if key.starts_with("SCHILY.xattr.") {
                    out.push((key.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
    }
    Ok(out)
}

fn write_pax<W: Write>(
    b: &mut tar::Builder<W>,
    xattrs: &[(String, Vec<u8>)],
) -> Result<(), ImageError> {
    if !xattrs.is_empty() {
        b.append_pax_extensions(xattrs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(out_err)?;
    }
    Ok(())
}

/// Copies the layer tar from `input` to `output`, checked and converted. The input is read only
/// up to the end-of-archive marker; the caller drains the rest.
pub fn filter<R: Read, W: Write>(
    input: R,
    output: W,
    opts: FilterOptions,
) -> Result<FilterStats, ImageError> {
    let mut archive = tar::Archive::new(input);
    let mut out = tar::Builder::new(output);
    out.mode(tar::HeaderMode::Complete);
    let mut stats = FilterStats::default();
    let mut symlinks: HashSet<String> = HashSet::new();
    let mut files: HashSet<String> = HashSet::new();
    let mut dirs: BTreeMap<String, Option<DirMeta>> = BTreeMap::new();
    let mut opaque: HashSet<String> = HashSet::new();
    let mut parents: HashSet<String> = HashSet::new();

    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        stats.entries += 1;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = clean_path(&raw)?;
        if path.is_empty() {
            continue; // the root directory itself
        }
        // No entry may be placed through a symlink of this layer.
        let mut prefix = String::new();
        for part in path.split('/').take(path.split('/').count() - 1) {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if symlinks.contains(&prefix) {
                return Err(hostile(format!(
                    "entry {raw:?} is written through the symlink {prefix:?}"
                )));
            }
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), path.clone()),
        };
        if !parent.is_empty() && !parents.contains(&parent) {
            let mut p = parent.as_str();
            loop {
                if !parents.insert(p.to_string()) {
                    break;
                }
                match p.rsplit_once('/') {
                    Some((up, _)) => p = up,
                    None => break,
                }
            }
        }
        if name == OPAQUE {
            if !parent.is_empty() {
                dirs.entry(parent.clone()).or_insert(None);
            }
            opaque.insert(parent);
            stats.opaque_dirs += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(hostile(format!("whiteout {raw:?} names nothing")));
            }
            let target = if parent.is_empty() {
                hidden.to_string()
            } else {
                format!("{parent}/{hidden}")
            };
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Char);
            h.set_device_major(0).map_err(out_err)?;
            h.set_device_minor(0).map_err(out_err)?;
            h.set_mode(0);
            h.set_size(0);
            h.set_mtime(entry.header().mtime().unwrap_or(0));
            out.append_data(&mut h, &target, std::io::empty())
                .map_err(out_err)?;
            symlinks.remove(&target);
            stats.whiteouts += 1;
            continue;
        }
        let xattrs = xattrs_of(&mut entry)?;
        let mut h = Header::new_gnu();
        copy_meta(entry.header(), &mut h)?;
        match kind {
            EntryType::Directory => {
                symlinks.remove(&path);
                dirs.insert(path, Some(DirMeta { header: h, xattrs }));
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().map_err(io)?;
                h.set_entry_type(EntryType::Regular);
                h.set_size(size);
                write_pax(&mut out, &xattrs)?;
                out.append_data(&mut h, &path, &mut entry)
                    .map_err(out_err)?;
                symlinks.remove(&path);
                files.insert(path);
                stats.files += 1;
                stats.file_bytes += size;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                h.set_entry_type(EntryType::Symlink);
                h.set_size(0);
                write_pax(&mut out, &xattrs)?;
                out.append_link(&mut h, &path, &target).map_err(out_err)?;
                symlinks.insert(path);
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                let target = clean_path(&raw_target).map_err(|_| {
                    hostile(format!(
                        "hard link {raw:?} points outside the layer ({raw_target:?})"
                    ))
                })?;
                if !files.contains(&target) {
                    return Err(hostile(format!(
                        "hard link {raw:?} points to {raw_target:?}, which is not an earlier file of this layer"
                    )));
                }
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                out.append_link(&mut h, &path, &target).map_err(out_err)?;
                files.insert(path);
            }
            EntryType::Char | EntryType::Block => {
                if !opts.allow_devices {
                    return Err(hostile(format!(
                        "device node {raw:?} is not allowed in a layer"
                    )));
                }
                h.set_entry_type(kind);
                h.set_device_major(entry.header().device_major().ok().flatten().unwrap_or(0))
                    .map_err(out_err)?;
                h.set_device_minor(entry.header().device_minor().ok().flatten().unwrap_or(0))
                    .map_err(out_err)?;
                h.set_size(0);
                out.append_data(&mut h, &path, std::io::empty())
                    .map_err(out_err)?;
            }
            EntryType::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                h.set_size(0);
                out.append_data(&mut h, &path, std::io::empty())
                    .map_err(out_err)?;
            }
            EntryType::GNUSparse => {
                return Err(hostile(format!("sparse file {raw:?} is not supported")))
            }
            other => {
                return Err(hostile(format!(
                    "entry {raw:?} has an unsupported type {other:?}"
                )))
            }
        }
    }
    stats.implicit_dirs = parents
        .iter()
        .filter(|p| !matches!(dirs.get(*p), Some(Some(_))))
        .chain(dirs.iter().filter(|(_, m)| m.is_none()).map(|(p, _)| p))
        .cloned()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for (path, meta) in &dirs {
        let (mut h, mut xattrs) = match meta {
            Some(m) => (m.header.clone(), m.xattrs.clone()),
            None => {
                let mut h = Header::new_gnu();
                h.set_mode(0o755);
                (h, Vec::new())
            }
        };
        if opaque.contains(path) {
            xattrs.retain(|(k, _)| k != OPAQUE_XATTR);
            xattrs.push((OPAQUE_XATTR.to_string(), b"y".to_vec()));
        }
        h.set_entry_type(EntryType::Directory);
        h.set_size(0);
        write_pax(&mut out, &xattrs)?;
        out.append_data(&mut h, format!("{path}/"), std::io::empty())
            .map_err(out_err)?;
    }
    let mut w = out.into_inner().map_err(out_err)?;
    w.flush().map_err(out_err)?;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data_or_link) in entries {
            let mut h = Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            match kind {
                EntryType::Regular => {
                    h.set_size(data_or_link.len() as u64);
                    b.append_data(&mut h, path, data_or_link.as_bytes())
                        .unwrap();
                }
                EntryType::Symlink | EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data_or_link).unwrap();
                }
                _ => {
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    /// Raw names the tar crate would refuse to write (absolute, `..`).
    fn raw_tar(name: &str) -> Vec<u8> {
        let mut h = Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        let mut v = h.as_bytes().to_vec();
        v.extend_from_slice(&[b'x'; 512]);
        v.extend_from_slice(&[0; 1024]);
        v
    }

    fn run(tar: &[u8]) -> Result<(FilterStats, Vec<(String, EntryType)>), ImageError> {
        let mut out = Vec::new();
        let stats = filter(tar, &mut out, FilterOptions::default())?;
        let mut a = tar::Archive::new(out.as_slice());
        let listed = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().entry_type(),
                )
            })
            .collect();
        Ok((stats, listed))
    }

    #[test]
    fn whiteouts_become_char_devices_and_opaque_markers_an_xattr_on_their_dir() {
        let t = tar_of(&[
            ("etc/", EntryType::Directory, ""),
            ("etc/.wh.passwd", EntryType::Regular, ""),
            ("var/.wh..wh..opq", EntryType::Regular, ""),
            ("var/new", EntryType::Regular, "n"),
        ]);
        let mut out = Vec::new();
        let stats = filter(t.as_slice(), &mut out, FilterOptions::default()).unwrap();
        assert_eq!((stats.whiteouts, stats.opaque_dirs, stats.files), (1, 1, 1));
        assert_eq!(
            stats.implicit_dirs,
            ["var"],
            "etc has its own entry, var does not"
        );
        let mut a = tar::Archive::new(out.as_slice());
        let mut seen = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().display().to_string();
            let xattrs: Vec<String> = e
                .pax_extensions()
                .unwrap()
                .map(|x| x.map(|x| x.unwrap().key().unwrap().to_string()).collect())
                .unwrap_or_default();
            seen.insert(
                path,
                (
                    e.header().entry_type(),
                    e.header().device_major().ok().flatten(),
                    xattrs,
                ),
            );
        }
        assert_eq!(seen["etc/passwd"].0, EntryType::Char);
        assert_eq!(seen["etc/passwd"].1, Some(0));
        assert_eq!(seen["var/"].2, vec![OPAQUE_XATTR.to_string()]);
        assert!(!seen.keys().any(|k| k.contains(".wh.")));
    }

    #[test]
    fn absolute_paths_and_dot_dot_are_refused() {
        for name in ["/etc/passwd", "../escape", "a/../../b"] {
            let err = run(&raw_tar(name)).unwrap_err();
            assert!(matches!(err, ImageError::HostileLayer(_)), "{name}: {err}");
        }
    }

    #[test]
    fn writing_through_a_symlink_of_the_layer_is_refused() {
        let t = tar_of(&[
            ("lib", EntryType::Symlink, "/etc"),
            ("lib/evil", EntryType::Regular, "x"),
        ]);
        let err = run(&t).unwrap_err().to_string();
        assert!(err.contains("through the symlink \"lib\""), "{err}");
        // Replacing the symlink itself is fine.
        let t = tar_of(&[
            ("lib", EntryType::Symlink, "/etc"),
            ("lib", EntryType::Directory, ""),
            ("lib/ok", EntryType::Regular, "x"),
        ]);
        assert!(run(&t).is_ok());
    }

    #[test]
    fn hard_links_must_point_at_an_earlier_file_of_the_layer() {
        let ok = tar_of(&[("a", EntryType::Regular, "x"), ("b", EntryType::Link, "a")]);
        assert!(run(&ok).is_ok());
        for target in ["/etc/shadow", "../x", "missing"] {
            let t = tar_of(&[
                ("a", EntryType::Regular, "x"),
                ("b", EntryType::Link, target),
            ]);
            let err = run(&t).unwrap_err();
            assert!(
                matches!(err, ImageError::HostileLayer(_)),
                "{target}: {err}"
            );
        }
    }

    #[test]
    fn device_nodes_are_refused_unless_allowed() {
        let t = tar_of(&[("dev/sda", EntryType::Block, "")]);
        assert!(matches!(run(&t), Err(ImageError::HostileLayer(_))));
        let mut out = Vec::new();
        assert!(filter(
            t.as_slice(),
            &mut out,
            FilterOptions {
                allow_devices: true
            }
        )
        .is_ok());
    }

    #[test]
    fn directories_come_last_with_their_attributes() {
        let t = tar_of(&[
            ("d/", EntryType::Directory, ""),
            ("d/f", EntryType::Regular, "1"),
        ]);
        let (_, listed) = run(&t).unwrap();
        assert_eq!(
            listed,
            [
                ("d/f".to_string(), EntryType::Regular),
                ("d/".to_string(), EntryType::Directory)
            ]
        );
    }
}
