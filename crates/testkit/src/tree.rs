//! Snapshots of directory trees for comparing what two unpackers produced: names, types,
//! modes, owners, contents, symlink targets, hard-link groups and xattrs (not times).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Content hash of files, target of symlinks, device numbers of devices.
    pub content: String,
    /// For files with several links: the first path (sorted) of the same inode.
    pub link_group: Option<String>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn xattrs(p: &Path) -> BTreeMap<String, Vec<u8>> {
    let out = std::process::Command::new("getfattr")
        .args(["-h", "-d", "-m", "-", "-e", "hex", "--absolute-names"])
        .arg(p)
        .output();
    let mut m = BTreeMap::new();
    if let Ok(o) = out {
        for line in String::from_utf8_lossy(&o.stdout).lines() {
            if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("security.") {
                    continue;
                }
                m.insert(
                    k.to_string(),
                    hex::decode(v.trim_start_matches("0x")).unwrap_or_default(),
                );
            }
        }
    }
    m
}

/// Every entry below `root` (not `root` itself), by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, Vec<String>> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let (kind, content) = if ft.is_dir() {
                stack.push(p.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&p)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if ft.is_file() {
                (
                    "file",
                    hex::encode(Sha256::digest(std::fs::read(&p).unwrap())),
                )
            } else {
                ("special", format!("{:x}", m.rdev()))
            };
            if ft.is_file() && m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().push(rel.clone());
            }
            out.insert(
                rel,
                Node {
                    kind,
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    content,
                    link_group: None,
                    xattrs: xattrs(&p),
                },
            );
        }
    }
    for (_, mut paths) in inodes {
        paths.sort();
        // Links to files outside the snapshot (none here) would not group; fine for tests.
        if paths.len() > 1 {
            for p in &paths {
                out.get_mut(p).unwrap().link_group = Some(paths[0].clone());
            }
        }
    }
    out
}

/// The differences between two snapshots, one line each.
pub fn diff(a: &BTreeMap<String, Node>, b: &BTreeMap<String, Node>) -> Vec<String> {
    let mut d = Vec::new();
    for (k, v) in a {
        match b.get(k) {
            None => d.push(format!("only in first: {k} ({})", v.kind)),
            Some(w) if w != v => d.push(format!("differs: {k}: {v:?} vs {w:?}")),
            _ => {}
        }
    }
    for k in b.keys() {
        if !a.contains_key(k) {
            d.push(format!("only in second: {k}"));
        }
    }
    d
}
