//! `aosctl pack --rootfs TREE [--base OLD]`: a root filesystem tree becomes a rootfs component,
//! a squashfs image in an OCI archive. Full (`…component.full.v1+squashfs`): the whole tree.
//! Incremental (`…component.inc.v1+squashfs`) against the tree of the version it updates:
//! the entries added or changed (with their parent directories, and every member of a changed
//! hard-link group), and for each deleted path a character device 0:0 marker at that path
//! (one per topmost deleted path). `/.aos-image` names the kind, the version and, for an
//! incremental image, its base; the boot side reads it and never copies it into the root.
//! The tree is streamed as tar into `tar2sqfs`: owners, modes, device numbers and hard links
//! are kept without running as root.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use aos_image::oci::media;

use super::component::{archive_component, PackedComponent};
use super::PackError;

/// The file a rootfs image describes itself in.
pub const IMAGE_INFO: &str = ".aos-image";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink(PathBuf),
    Char(u64),
    Block(u64),
    Fifo,
}

#[derive(Clone, Debug)]
struct Entry {
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: i64,
    size: u64,
    /// (device, inode) of a file with more than one link.
    link: Option<(u64, u64)>,
}

fn read_err(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// Every entry under `root` by relative path (sorted, so parents come first).
fn walk(root: &Path) -> Result<BTreeMap<PathBuf, Entry>, PackError> {
    let mut out = BTreeMap::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for e in std::fs::read_dir(&dir).map_err(read_err(&dir))? {
            let e = e.map_err(read_err(&dir))?;
            let rel = rel.join(e.file_name());
            let path = root.join(&rel);
            let m = std::fs::symlink_metadata(&path).map_err(read_err(&path))?;
            let t = m.file_type();
            let kind = if t.is_dir() {
                stack.push(rel.clone());
                Kind::Dir
            } else if t.is_file() {
                Kind::File
            } else if t.is_symlink() {
                Kind::Symlink(std::fs::read_link(&path).map_err(read_err(&path))?)
            } else if t.is_char_device() {
                Kind::Char(m.rdev())
            } else if t.is_block_device() {
                Kind::Block(m.rdev())
            } else if t.is_fifo() {
                Kind::Fifo
            } else {
                continue; // sockets are not shipped
            };
            let link = (t.is_file() && m.nlink() > 1).then(|| (m.dev(), m.ino()));
            out.insert(
                rel,
                Entry {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid() as u64,
                    gid: m.gid() as u64,
                    mtime: m.mtime(),
                    size: m.size(),
                    link,
                },
            );
        }
    }
    Ok(out)
}

fn same_bytes(a: &Path, b: &Path) -> Result<bool, PackError> {
    let mut fa = std::fs::File::open(a).map_err(read_err(a))?;
    let mut fb = std::fs::File::open(b).map_err(read_err(b))?;
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba).map_err(read_err(a))?;
        let mut got = 0;
        while got < n {
            let k = fb.read(&mut bb[got..n]).map_err(read_err(b))?;
            if k == 0 {
                return Ok(false);
            }
            got += k;
        }
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(fb.read(&mut bb[..1]).map_err(read_err(b))? == 0);
        }
    }
}

/// What goes into an incremental image: changed or added paths, and deleted ones.
fn diff(
    base: &Path,
    old: &BTreeMap<PathBuf, Entry>,
    tree: &Path,
    new: &BTreeMap<PathBuf, Entry>,
) -> Result<(BTreeSet<PathBuf>, Vec<PathBuf>), PackError> {
    let mut changed = BTreeSet::new();
    for (p, n) in new {
        let differs = match old.get(p) {
            None => true,
            Some(o) => {
                o.kind != n.kind
                    || o.mode != n.mode
                    || o.uid != n.uid
                    || o.gid != n.gid
                    || (n.kind != Kind::Dir && o.mtime != n.mtime && n.kind != Kind::File)
                    || (n.kind == Kind::File
                        && (o.size != n.size || !same_bytes(&base.join(p), &tree.join(p))?))
                    || (n.kind == Kind::File && o.link.is_some() != n.link.is_some())
            }
        };
        if differs {
            changed.insert(p.clone());
        }
    }
    // A changed hard-link group ships whole, so that it stays one group.
    let groups: BTreeSet<(u64, u64)> = changed.iter().filter_map(|p| new[p].link).collect();
    for (p, n) in new {
        if n.link.is_some_and(|l| groups.contains(&l)) {
            changed.insert(p.clone());
        }
    }
    let deleted: Vec<PathBuf> = old
        .keys()
        .filter(|p| !new.contains_key(*p))
        .filter(|p| {
            // Only the topmost deleted path: its subtree goes with it.
            p.parent()
                .is_none_or(|d| d.as_os_str().is_empty() || new.contains_key(d))
        })
        .cloned()
        .collect();
    Ok((changed, deleted))
}

fn header(e: &Entry, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn major_minor(rdev: u64) -> (u32, u32) {
    (
        ((rdev >> 8) & 0xfff) as u32 | ((rdev >> 32) & !0xfff) as u32,
        (rdev & 0xff) as u32 | ((rdev >> 12) & !0xff) as u32,
    )
}

/// Writes the tar stream of the image into `w`.
fn write_tar(
    w: impl Write,
    tree: &Path,
    entries: &BTreeMap<PathBuf, Entry>,
    include: &BTreeSet<PathBuf>,
    markers: &[PathBuf],
    info: &str,
) -> Result<(), PackError> {
    let werr = |source| PackError::Write {
        path: "tar2sqfs".into(),
        source,
    };
    let mut b = tar::Builder::new(w);
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_size(info.len() as u64);
    b.append_data(&mut h, IMAGE_INFO, info.as_bytes())
        .map_err(werr)?;
    let mut all: BTreeMap<&PathBuf, Option<&Entry>> = BTreeMap::new();
    for p in include {
        all.insert(p, Some(&entries[p]));
    }
    for m in markers {
        all.insert(m, None);
    }
    let mut first_of: BTreeMap<(u64, u64), &PathBuf> = BTreeMap::new();
    for (p, e) in all {
        let Some(e) = e else {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Char);
            h.set_mode(0o000);
            h.set_mtime(0);
            h.set_size(0);
            h.set_device_major(0).map_err(werr)?;
            h.set_device_minor(0).map_err(werr)?;
            b.append_data(&mut h, p, std::io::empty()).map_err(werr)?;
            continue;
        };
        match &e.kind {
            Kind::Dir => {
                let mut h = header(e, tar::EntryType::Directory);
                b.append_data(&mut h, p, std::io::empty()).map_err(werr)?;
            }
            Kind::File => {
                if let Some(first) = e.link.and_then(|l| first_of.get(&l)) {
                    let mut h = header(e, tar::EntryType::Link);
                    b.append_link(&mut h, p, first).map_err(werr)?;
                    continue;
                }
                if let Some(l) = e.link {
                    first_of.insert(l, p);
                }
                let path = tree.join(p);
                let f = std::fs::File::open(&path).map_err(read_err(&path))?;
                let mut h = header(e, tar::EntryType::Regular);
                h.set_size(e.size);
                b.append_data(&mut h, p, f).map_err(werr)?;
            }
            Kind::Symlink(target) => {
                let mut h = header(e, tar::EntryType::Symlink);
                b.append_link(&mut h, p, target).map_err(werr)?;
            }
            Kind::Char(rdev) | Kind::Block(rdev) => {
                let t = if matches!(e.kind, Kind::Char(_)) {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                };
                let mut h = header(e, t);
                let (ma, mi) = major_minor(*rdev);
                h.set_device_major(ma).map_err(werr)?;
                h.set_device_minor(mi).map_err(werr)?;
                b.append_data(&mut h, p, std::io::empty()).map_err(werr)?;
            }
            Kind::Fifo => {
                let mut h = header(e, tar::EntryType::Fifo);
                b.append_data(&mut h, p, std::io::empty()).map_err(werr)?;
            }
        }
    }
    b.into_inner().map_err(werr)?.flush().map_err(werr)
}

fn version_of(tree: &Path, file: &str) -> Result<String, PackError> {
    let p = tree.join(file.trim_start_matches('/'));
    let text = std::fs::read_to_string(&p).map_err(read_err(&p))?;
    text.lines()
        .next()
        .map(|l| l.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| PackError::Config {
            file: p.display().to_string(),
            line: 1,
            path: file.into(),
            message: "the version file is empty".into(),
        })
}

/// Packs the tree `tree` (incremental against `base` when given) into the archive `out`;
/// versions are read from `version_file` in each tree.
pub fn pack_rootfs(
    tree: &Path,
    base: Option<&Path>,
    version_file: &str,
    out: &Path,
    os: &str,
    arch: &str,
) -> Result<PackedComponent, PackError> {
    let version = version_of(tree, version_file)?;
    let new = walk(tree)?;
    let (include, markers, info, media_type) = match base {
        None => (
            new.keys().cloned().collect(),
            Vec::new(),
            format!("kind=full\nversion={version}\n"),
            media::COMPONENT_FULL_SQUASHFS,
        ),
        Some(base) => {
            let base_version = version_of(base, version_file)?;
            let old = walk(base)?;
            if let Some((p, _)) = new.iter().find(|(_, e)| e.kind == Kind::Char(0)) {
                return Err(PackError::Config {
                    file: tree.display().to_string(),
                    line: 0,
                    path: p.display().to_string(),
                    message: "a character device 0:0 reads as a deletion in an incremental image"
                        .into(),
                });
            }
            let (mut changed, deleted) = diff(base, &old, tree, &new)?;
            let parents: Vec<PathBuf> = changed
                .iter()
                .chain(&deleted)
                .flat_map(|p| {
                    p.ancestors()
                        .skip(1)
                        .map(Path::to_path_buf)
                        .collect::<Vec<_>>()
                })
                .filter(|a| !a.as_os_str().is_empty())
                .collect();
            changed.extend(parents);
            (
                changed,
                deleted,
                format!("kind=incremental\nversion={version}\nbase={base_version}\n"),
                media::COMPONENT_INC_SQUASHFS,
            )
        }
    };
    let sqfs = out.with_extension("rootfs.sqfs.tmp");
    let result = (|| {
        let _ = std::fs::remove_file(&sqfs);
        let mut child = Command::new("tar2sqfs")
            .args([
                "--quiet",
                "--no-skip",
                "--defaults",
                "mode=0755,uid=0,gid=0,mtime=0",
            ])
            .arg(&sqfs)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| PackError::Write {
                path: "tar2sqfs (is squashfs-tools-ng installed?)".into(),
                source,
            })?;
        let stdin = child.stdin.take().ok_or_else(|| PackError::Write {
            path: "tar2sqfs".into(),
            source: std::io::Error::other("no stdin"),
        })?;
        let wrote = write_tar(stdin, tree, &new, &include, &markers, &info);
        let done = child
            .wait_with_output()
            .map_err(|source| PackError::Write {
                path: "tar2sqfs".into(),
                source,
            })?;
        wrote?;
        if !done.status.success() {
            return Err(PackError::Write {
                path: sqfs.display().to_string(),
                source: std::io::Error::other(format!(
                    "tar2sqfs: {}",
                    String::from_utf8_lossy(&done.stderr).trim()
                )),
            });
        }
        archive_component(&sqfs, media_type, out, os, arch)
    })();
    let _ = std::fs::remove_file(&sqfs);
    result
}
