//! The boot side of rootfs updates (`deploy/aos-rootfs`) on real squashfs images made by
//! `aosctl pack --rootfs`: a full update makes the root the image and keeps the preserve
//! list; an incremental one adds, changes and deletes (only at its 0:0 markers, never other
//! device nodes) and keeps hard-link groups; the trial root shows the new version over the
//! old root; an unconfirmed trial reverts; a wrong base is refused before a byte is written;
//! an apply cut short completes on the next run; an image that is not squashfs is refused.
//! Trees carry hard links, a device node, a symlink and permissions that change. The script
//! runs under busybox's shell and applets, as in an initramfs. Needs root;
//! unmounts what it mounted.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use aos_e2e::bin;
use aos_testkit::tree::{diff, snapshot};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/aos-rootfs")
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root tree of `version` with a hard-link pair, a device node and a machine id.
fn tree(dir: &Path, version: &str) -> PathBuf {
    let t = dir.join(format!("tree-{version}"));
    for d in ["etc/aos", "usr/bin", "dev", "var/lib/gone/deep"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    std::fs::write(t.join("etc/aos/version"), format!("{version}\n")).unwrap();
    std::fs::write(t.join("etc/machine-id"), format!("id-of-{version}\n")).unwrap();
    std::fs::write(t.join("usr/bin/tool"), format!("tool {version}\n")).unwrap();
    std::fs::hard_link(t.join("usr/bin/tool"), t.join("usr/bin/tool-alias")).unwrap();
    std::fs::write(t.join("usr/bin/same"), "unchanged\n").unwrap();
    std::fs::hard_link(t.join("usr/bin/same"), t.join("usr/bin/same-alias")).unwrap();
    std::fs::write(t.join("var/lib/gone/deep/file"), "old data\n").unwrap();
    sh(&[
        "mknod",
        t.join("dev/console").to_str().unwrap(),
        "c",
        "5",
        "1",
    ]);
    std::os::unix::fs::symlink("tool", t.join("usr/bin/link")).unwrap();
    t
}

/// The next version of `old`: changed, added and deleted files.
fn next(dir: &Path, old: &Path, version: &str) -> PathBuf {
    let t = dir.join(format!("tree-{version}"));
    sh(&["cp", "-a", old.to_str().unwrap(), t.to_str().unwrap()]);
    std::fs::write(t.join("etc/aos/version"), format!("{version}\n")).unwrap();
    std::fs::write(t.join("etc/machine-id"), format!("id-of-{version}\n")).unwrap();
    std::fs::write(t.join("usr/bin/tool"), format!("tool {version}\n")).unwrap();
    std::fs::write(t.join("usr/bin/new"), "added\n").unwrap();
    std::fs::remove_dir_all(t.join("var/lib/gone")).unwrap();
    // A symlink pointed elsewhere and a permission change.
    std::fs::remove_file(t.join("usr/bin/link")).unwrap();
    std::os::unix::fs::symlink("new", t.join("usr/bin/link")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        t.join("usr/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    t
}

/// Packs `tree` (against `base`) and returns the squashfs blob from the archive.
fn pack(dir: &Path, tree: &Path, base: Option<&Path>) -> PathBuf {
    let archive = dir.join("rootfs.tar");
    let mut cmd = Command::new(bin("aosctl"));
    cmd.args(["pack", "--rootfs"])
        .arg(tree)
        .arg("-o")
        .arg(&archive);
    if let Some(b) = base {
        cmd.arg("--base").arg(b);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let digest = text.split("component sha256:").nth(1).unwrap();
    let hex = &digest[..64];
    let x = dir.join("x");
    std::fs::create_dir_all(&x).unwrap();
    sh(&[
        "tar",
        "-xf",
        archive.to_str().unwrap(),
        "-C",
        x.to_str().unwrap(),
    ]);
    x.join("blobs/sha256").join(hex)
}

struct Device {
    dir: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    newroot: PathBuf,
}

impl Device {
    /// A root holding a copy of `tree`, and a work directory holding `image`.
    fn new(dir: tempfile::TempDir, tree: &Path, image: &Path) -> Device {
        let root = dir.path().join("root");
        sh(&["cp", "-a", tree.to_str().unwrap(), root.to_str().unwrap()]);
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::copy(image, work.join("image.squashfs")).unwrap();
        let newroot = dir.path().join("newroot");
        Device {
            dir,
            root,
            work,
            newroot,
        }
    }

    fn flag(&self, name: &str, text: &str) {
        std::fs::write(self.work.join(name), text).unwrap();
    }

    fn has(&self, name: &str) -> bool {
        self.work.join(name).exists()
    }

    /// Runs the boot side as an initramfs would: busybox's shell and applets first on the
    /// PATH (rsync, getfattr and what busybox lacks from the host after them).
    fn boot(&self) {
        let applets = self.dir.path().join("busybox");
        if !applets.exists() {
            std::fs::create_dir_all(&applets).unwrap();
            let list = Command::new("busybox").arg("--list").output().unwrap();
            for a in String::from_utf8_lossy(&list.stdout).lines() {
                let _ = std::os::unix::fs::symlink("/bin/busybox", applets.join(a));
            }
        }
        let out = Command::new("busybox")
            .arg("sh")
            .arg(script())
            .args(["boot"])
            .args([&self.root, &self.work, &self.newroot])
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", applets.display()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        for m in [
            self.newroot.clone(),
            self.work.join("trial"),
            self.work.join("image.mnt"),
        ] {
            let _ = Command::new("umount").arg(&m).output();
        }
        let _ = self.dir.path();
    }
}

fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .contains(&format!(" {} ", p.display()))
}

#[test]
fn a_full_update_makes_the_root_the_image_and_keeps_the_preserve_list() {
    let dir = tempfile::tempdir().unwrap();
    let old = tree(dir.path(), "1.0");
    let new = next(dir.path(), &old, "2.0");
    let image = pack(dir.path(), &new, None);
    let dev = Device::new(tempfile::tempdir().unwrap(), &old, &image);
    std::fs::write(dev.root.join("stray"), "not in the image\n").unwrap();
    dev.flag("preserve", "/etc/machine-id\n");
    dev.flag("do_apply", "full");
    dev.flag("updated", "2.0");
    dev.boot();
    assert!(!dev.has("do_apply") && !dev.has("updated") && !dev.has("failed"));
    assert!(!mounted(&dev.work.join("image.mnt")));
    let mut want = snapshot(&new);
    let got = snapshot(&dev.root);
    // The preserved machine id is the device's, not the image's.
    assert_eq!(
        std::fs::read_to_string(dev.root.join("etc/machine-id")).unwrap(),
        "id-of-1.0\n"
    );
    want.insert("etc/machine-id".into(), got["etc/machine-id"].clone());
    assert_eq!(diff(&want, &got), Vec::<String>::new());
    assert!(!dev.root.join(".aos-image").exists());
    let ino = |p: &str| std::fs::metadata(dev.root.join(p)).unwrap().ino();
    assert_eq!(
        ino("usr/bin/tool"),
        ino("usr/bin/tool-alias"),
        "hard links kept"
    );
}

#[test]
fn an_incremental_update_is_tried_over_the_old_root_then_applied_and_an_apply_cut_short_completes()
{
    let dir = tempfile::tempdir().unwrap();
    let old = tree(dir.path(), "1.0");
    let new = next(dir.path(), &old, "2.0");
    let image = pack(dir.path(), &new, Some(&old));
    let dev = Device::new(tempfile::tempdir().unwrap(), &old, &image);
    let before = snapshot(&dev.root);

    // Trial: the new version over the old root, deletions hidden; the root untouched.
    dev.flag("do_update", "incremental");
    dev.boot();
    assert!(
        dev.has("updated") && !dev.has("do_update"),
        "{}",
        dev.has("failed")
    );
    let trial = snapshot(&dev.newroot);
    assert_eq!(trial["etc/aos/version"], snapshot(&new)["etc/aos/version"]);
    assert!(
        !trial.contains_key("var/lib/gone"),
        "the marker hides the deleted tree"
    );
    assert!(trial.contains_key("usr/bin/same-alias"));
    assert_eq!(diff(&before, &snapshot(&dev.root)), Vec::<String>::new());
    for m in [
        dev.newroot.clone(),
        dev.work.join("trial"),
        dev.work.join("image.mnt"),
    ] {
        sh(&["umount", m.to_str().unwrap()]);
    }

    // Confirmed: applied; only the marked path is deleted, the console stays.
    dev.flag("do_apply", "incremental");
    dev.boot();
    assert!(!dev.has("do_apply") && !dev.has("updated") && !dev.has("failed"));
    let got = snapshot(&dev.root);
    assert_eq!(diff(&snapshot(&new), &got), Vec::<String>::new());
    assert_eq!(
        got["dev/console"].content,
        snapshot(&old)["dev/console"].content
    );
    let ino = |p: &str| std::fs::metadata(dev.root.join(p)).unwrap().ino();
    assert_eq!(ino("usr/bin/same"), ino("usr/bin/same-alias"));
    assert_eq!(ino("usr/bin/tool"), ino("usr/bin/tool-alias"));

    // A power cut mid-apply leaves do_apply: the next boot applies again to the same result.
    dev.flag("do_apply", "incremental");
    dev.boot();
    assert_eq!(
        diff(&snapshot(&new), &snapshot(&dev.root)),
        Vec::<String>::new()
    );
}

#[test]
fn an_unconfirmed_trial_reverts_and_a_wrong_base_is_refused_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let old = tree(dir.path(), "1.0");
    let new = next(dir.path(), &old, "2.0");
    let image = pack(dir.path(), &new, Some(&old));

    let dev = Device::new(tempfile::tempdir().unwrap(), &old, &image);
    let before = snapshot(&dev.root);
    dev.flag("updated", "2.0");
    dev.boot();
    assert!(!dev.has("updated") && !dev.has("failed"));
    assert_eq!(diff(&before, &snapshot(&dev.root)), Vec::<String>::new());

    let other = next(dir.path(), &old, "1.5");
    let dev = Device::new(tempfile::tempdir().unwrap(), &other, &image);
    let before = snapshot(&dev.root);
    dev.flag("do_update", "incremental");
    dev.boot();
    let why = std::fs::read_to_string(dev.work.join("failed")).unwrap();
    assert!(
        why.contains("updates version '1.0'") && why.contains("'1.5'"),
        "{why}"
    );
    assert!(!dev.has("do_update") && !dev.has("updated"));
    assert!(!mounted(&dev.newroot));
    assert_eq!(diff(&before, &snapshot(&dev.root)), Vec::<String>::new());
}

#[test]
fn an_image_that_is_not_squashfs_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let old = tree(dir.path(), "1.0");
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0x5a; 4096]).unwrap();
    let dev = Device::new(tempfile::tempdir().unwrap(), &old, &junk);
    let before = snapshot(&dev.root);
    dev.flag("do_update", "full");
    dev.boot();
    let why = std::fs::read_to_string(dev.work.join("failed")).unwrap();
    assert!(why.contains("does not mount"), "{why}");
    assert!(!dev.has("do_update") && !dev.has("updated"));
    assert_eq!(diff(&before, &snapshot(&dev.root)), Vec::<String>::new());
}
