//! The filter's refusals and conversions, on tars built here.
use std::os::unix::ffi::OsStrExt;

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
    // Nor by making it a directory within the same layer (it was written out already).
    let t = tar_of(&[
        ("lib", EntryType::Symlink, "/etc"),
        ("lib", EntryType::Directory, ""),
        ("lib/ok", EntryType::Regular, "x"),
    ]);
    let err = run(&t).unwrap_err().to_string();
    assert!(err.contains("replaces an earlier entry"), "{err}");
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

#[test]
fn names_that_are_not_utf8_stay_distinct() {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [(&b"n\xff"[..], &b"one"[..]), (&b"n\xfe"[..], &b"two"[..])] {
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_path(std::path::Path::new(std::ffi::OsStr::from_bytes(name)))
            .unwrap();
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    let t = b.into_inner().unwrap();
    let mut out = Vec::new();
    filter(t.as_slice(), &mut out, FilterOptions::default()).unwrap();
    let mut a = tar::Archive::new(out.as_slice());
    let names: Vec<Vec<u8>> = a
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect();
    assert_eq!(names, [b"n\xff".to_vec(), b"n\xfe".to_vec()]);
}

#[test]
fn a_later_entry_may_not_replace_a_directory_holding_earlier_entries() {
    // Found by hack/fuzz.sh: directories are written last, so the symlink would have come out
    // before the directory under it.
    let t = tar_of(&[
        ("x/a/", EntryType::Directory, ""),
        ("x", EntryType::Symlink, "elsewhere"),
    ]);
    let err = run(&t).unwrap_err().to_string();
    assert!(
        err.contains("replaces a directory that holds earlier entries"),
        "{err}"
    );
    // Two entries at one path (a symlink, then a file) would leave squashfs to choose.
    let t = tar_of(&[
        ("b", EntryType::Symlink, "a"),
        ("b", EntryType::Regular, "f"),
    ]);
    let err = run(&t).unwrap_err().to_string();
    assert!(err.contains("appears twice in the layer"), "{err}");
    // An empty directory may be replaced; it does not come out.
    let t = tar_of(&[
        ("x/", EntryType::Directory, ""),
        ("x", EntryType::Regular, "f"),
    ]);
    let (_, listed) = run(&t).unwrap();
    assert_eq!(listed, [("x".to_string(), EntryType::Regular)]);
}
