//! Checks every entry of a layer tar and rewrites the stream for the squashfs builder:
//! OCI whiteouts (`.wh.<name>`) become overlayfs whiteouts (character device 0:0), opaque
//! markers (`.wh..wh..opq`) become `trusted.overlay.opaque=y` on their directory, and entries
//! that could escape the layer are refused: absolute paths, `..`, writes through a symlink of the
//! layer, hard links to anything but an earlier file of the layer, device nodes (unless allowed),
//! sparse files. Directory entries are held back and written at the end (the builder creates
//! parents implicitly and takes the later attributes), so that an opaque marker can reach its
//! directory wherever it appears. Memory grows with the number of directories, not the data.
//! Names are kept as the bytes they are (squashfs and overlayfs take any byte but `/` and NUL):
//! two names that differ only in bytes that are not UTF-8 stay two files. What the stack check
//! needs of a layer (its symlinks, whiteouts, opaque and explicit directories, the directories
//! its entries sit in) is collected in [`LayerIndex`].

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tar::{EntryType, Header};

use crate::ImageError;

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
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
    pub index: LayerIndex,
}

/// The paths of a layer the stack check works on (names that are not UTF-8 are shown with
/// U+FFFD: a collision there can only refuse, never let through).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct LayerIndex {
    pub symlinks: BTreeSet<String>,
    /// Paths the layer removes from the layers below (whiteouts).
    pub whiteouts: BTreeSet<String>,
    /// Directories whose lower contents the layer hides.
    pub opaque: BTreeSet<String>,
    /// Directories with an entry of their own (replacing whatever was below at that path).
    pub dirs: BTreeSet<String>,
    /// Every directory an entry of the layer sits in.
    pub parents: BTreeSet<String>,
}

struct DirMeta {
    header: Header,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn hostile(msg: String) -> ImageError {
    ImageError::HostileLayer(msg)
}

/// A name for messages and the index.
fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn as_path(b: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(b))
}

/// A relative, normalized path (no `.`, no trailing `/`), or why it is refused.
fn clean_path(raw: &[u8]) -> Result<Vec<u8>, ImageError> {
    if raw.first() == Some(&b'/') {
        return Err(hostile(format!(
            "entry {:?} has an absolute path",
            show(raw)
        )));
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(hostile(format!(
                    "entry {:?} climbs out with '..'",
                    show(raw)
                )))
            }
            c => parts.push(c),
        }
    }
    Ok(parts.join(&b'/'))
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
    let mut symlinks: HashSet<Vec<u8>> = HashSet::new();
    let mut files: HashSet<Vec<u8>> = HashSet::new();
    let mut dirs: BTreeMap<Vec<u8>, Option<DirMeta>> = BTreeMap::new();
    let mut opaque: HashSet<Vec<u8>> = HashSet::new();
    let mut parents: HashSet<Vec<u8>> = HashSet::new();
    let mut whiteouts: BTreeSet<String> = BTreeSet::new();
    // Every path written out so far (directories come last): a path appears once.
    let mut written: HashSet<Vec<u8>> = HashSet::new();

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
        let raw = entry.path_bytes().into_owned();
        let shown = show(&raw);
        let path = clean_path(&raw)?;
        if path.is_empty() {
            continue; // the root directory itself
        }
        // No entry may be placed through a symlink of this layer.
        let parts: Vec<&[u8]> = path.split(|b| *b == b'/').collect();
        for n in 1..parts.len() {
            let prefix = parts[..n].join(&b'/');
            if symlinks.contains(&prefix) {
                return Err(hostile(format!(
                    "entry {shown:?} is written through the symlink {:?}",
                    show(&prefix)
                )));
            }
            if written.contains(&prefix) {
                return Err(hostile(format!(
                    "entry {shown:?} is placed under {:?}, which the layer holds as no directory",
                    show(&prefix)
                )));
            }
        }
        let (parent, name): (Vec<u8>, Vec<u8>) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (path[..i].to_vec(), path[i + 1..].to_vec()),
            None => (Vec::new(), path.clone()),
        };
        for n in 1..parts.len() {
            parents.insert(parts[..n].join(&b'/'));
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
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(hostile(format!("whiteout {shown:?} names nothing")));
            }
            let target = if parent.is_empty() {
                hidden.to_vec()
            } else {
                [parent.as_slice(), hidden].join(&b'/')
            };
            if parents.contains(&target) {
                return Err(hostile(format!(
                    "whiteout {shown:?} removes a directory that holds earlier entries of the layer"
                )));
            }
            if !written.insert(target.clone()) {
                return Err(hostile(format!(
                    "whiteout {shown:?} removes an entry of the layer itself"
                )));
            }
            dirs.remove(&target);
            let mut h = Header::new_gnu();
            h.set_entry_type(EntryType::Char);
            h.set_device_major(0).map_err(out_err)?;
            h.set_device_minor(0).map_err(out_err)?;
            h.set_mode(0);
            h.set_size(0);
            h.set_mtime(entry.header().mtime().unwrap_or(0));
            out.append_data(&mut h, as_path(&target), std::io::empty())
                .map_err(out_err)?;
            symlinks.remove(&target);
            whiteouts.insert(show(&target));
            stats.whiteouts += 1;
            continue;
        }
        if kind != EntryType::Directory {
            // Directories are written last: a later entry of another type at a directory's path
            // would end up under it. Replacing an empty one is fine; one that holds earlier
            // entries of the layer is refused.
            if parents.contains(&path) {
                return Err(hostile(format!(
                    "entry {shown:?} replaces a directory that holds earlier entries of the layer"
                )));
            }
            if !written.insert(path.clone()) {
                return Err(hostile(format!(
                    "entry {shown:?} appears twice in the layer"
                )));
            }
            dirs.remove(&path);
        }
        let xattrs = xattrs_of(&mut entry)?;
        let mut h = Header::new_gnu();
        copy_meta(entry.header(), &mut h)?;
        match kind {
            EntryType::Directory => {
                // What was written already cannot be taken back: a directory at the path of an
                // earlier entry of the layer would come out beside it.
                if written.contains(&path) {
                    return Err(hostile(format!(
                        "directory {shown:?} replaces an earlier entry of the layer"
                    )));
                }
                dirs.insert(path, Some(DirMeta { header: h, xattrs }));
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry.header().size().map_err(io)?;
                h.set_entry_type(EntryType::Regular);
                h.set_size(size);
                write_pax(&mut out, &xattrs)?;
                out.append_data(&mut h, as_path(&path), &mut entry)
                    .map_err(out_err)?;
                symlinks.remove(&path);
                files.insert(path);
                stats.files += 1;
                stats.file_bytes += size;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                h.set_entry_type(EntryType::Symlink);
                h.set_size(0);
                write_pax(&mut out, &xattrs)?;
                out.append_link(&mut h, as_path(&path), as_path(&target))
                    .map_err(out_err)?;
                symlinks.insert(path);
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let target = clean_path(&raw_target).map_err(|_| {
                    hostile(format!(
                        "hard link {shown:?} points outside the layer ({:?})",
                        show(&raw_target)
                    ))
                })?;
                if !files.contains(&target) {
                    return Err(hostile(format!(
                        "hard link {shown:?} points to {:?}, which is not an earlier file of this layer",
                        show(&raw_target)
                    )));
                }
                h.set_entry_type(EntryType::Link);
                h.set_size(0);
                out.append_link(&mut h, as_path(&path), as_path(&target))
                    .map_err(out_err)?;
                files.insert(path);
            }
            EntryType::Char | EntryType::Block => {
                if !opts.allow_devices {
                    return Err(hostile(format!(
                        "device node {shown:?} is not allowed in a layer"
                    )));
                }
                h.set_entry_type(kind);
                h.set_device_major(entry.header().device_major().ok().flatten().unwrap_or(0))
                    .map_err(out_err)?;
                h.set_device_minor(entry.header().device_minor().ok().flatten().unwrap_or(0))
                    .map_err(out_err)?;
                h.set_size(0);
                out.append_data(&mut h, as_path(&path), std::io::empty())
                    .map_err(out_err)?;
            }
            EntryType::Fifo => {
                h.set_entry_type(EntryType::Fifo);
                h.set_size(0);
                out.append_data(&mut h, as_path(&path), std::io::empty())
                    .map_err(out_err)?;
            }
            EntryType::GNUSparse => {
                return Err(hostile(format!("sparse file {shown:?} is not supported")))
            }
            other => {
                return Err(hostile(format!(
                    "entry {shown:?} has an unsupported type {other:?}"
                )))
            }
        }
    }
    stats.index = LayerIndex {
        // Symlinks the layer still holds at its end.
        symlinks: symlinks.iter().map(|p| show(p)).collect(),
        whiteouts,
        opaque: opaque.iter().map(|p| show(p)).collect(),
        dirs: dirs
            .iter()
            .filter(|(_, m)| m.is_some())
            .map(|(p, _)| show(p))
            .collect(),
        parents: parents.iter().map(|p| show(p)).collect(),
    };
    // Fixups name directories as text: one whose name is not UTF-8 keeps its layer's default.
    stats.implicit_dirs = parents
        .iter()
        .filter(|p| !matches!(dirs.get(*p), Some(Some(_))))
        .chain(dirs.iter().filter(|(_, m)| m.is_none()).map(|(p, _)| p))
        .filter_map(|p| String::from_utf8(p.clone()).ok())
        .collect::<BTreeSet<_>>()
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
        let mut with_slash = path.clone();
        with_slash.push(b'/');
        out.append_data(&mut h, as_path(&with_slash), std::io::empty())
            .map_err(out_err)?;
    }
    let mut w = out.into_inner().map_err(out_err)?;
    w.flush().map_err(out_err)?;
    Ok(stats)
}

#[cfg(test)]
mod tests;
