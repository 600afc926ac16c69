//! The rootfs of an instance: a read-only overlay, lowest first, of the host base (host `/`
//! under a directory of whiteouts that leaves only the host binds), the image layers in OCI
//! order (first diff id lowest), the stack fixups, and a small top layer of mount points,
//! `etc/hosts` and `etc/resolv.conf`. The small directories live on a tmpfs of aosd's own (an
//! overlay refuses lower layers that overlap, and `/` holds everything on the root filesystem),
//! and the overlay itself is handed to containerd, whose shim mounts it for the task and
//! unmounts it when the task is deleted.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aos_containerd::RootfsMount;
use aos_image::stack::{fixups, write_fixups, StackLayer};

use crate::InstanceError;

fn io(what: String) -> impl FnOnce(std::io::Error) -> InstanceError {
    move |source| InstanceError::Io { what, source }
}

/// Mounts a tmpfs at `dir` unless one is there already.
pub fn ensure_tmpfs(dir: &Path, size_mib: u64) -> Result<(), InstanceError> {
    std::fs::create_dir_all(dir).map_err(io(format!("failed to create {}", dir.display())))?;
    if aos_image::layerstore::is_mounted(dir) {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o"])
        .arg(format!("size={size_mib}m,mode=0711,nodev,nosuid"))
        .arg("aosd-run")
        .arg(dir)
        .status()
        .map_err(io("failed to run mount".into()))?;
    if !status.success() {
        return Err(InstanceError::Rootfs(format!(
            "failed to mount a tmpfs at {}",
            dir.display()
        )));
    }
    Ok(())
}

/// Makes `dir` a whiteout of every top-level entry of `host_root` except `keep`.
pub fn write_host_whiteouts(
    dir: &Path,
    host_root: &Path,
    keep: &[String],
) -> Result<(), InstanceError> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    std::fs::create_dir_all(dir).map_err(io(format!("failed to create {}", dir.display())))?;
    let entries = std::fs::read_dir(host_root)
        .map_err(io(format!("failed to list {}", host_root.display())))?;
    for e in entries.flatten() {
        let name = e.file_name();
        if keep.iter().any(|k| k.as_str() == name.to_string_lossy()) {
            continue;
        }
        let p = dir.join(&name);
        mknod(&p, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|source| {
            InstanceError::Sys {
                what: format!("failed to make whiteout {}", p.display()),
                source,
            }
        })?;
    }
    Ok(())
}

/// What the top layer holds.
#[derive(Clone, Debug, Default)]
pub struct TopLayer {
    /// The instance's hostname (also in `/etc/hosts`).
    pub hostname: String,
    /// Extra lines of `/etc/hosts`.
    pub hosts: Vec<String>,
    /// The text of `/etc/resolv.conf`.
    pub resolv_conf: String,
    /// Absolute paths of directories to mount onto.
    pub mount_dirs: Vec<String>,
    /// Absolute paths of files to mount onto.
    pub mount_files: Vec<String>,
}

/// Writes the top layer: the mount points every instance needs, and those of `top`.
pub fn write_top(dir: &Path, top: &TopLayer) -> Result<(), InstanceError> {
    let mkdir = |rel: &str| -> Result<(), InstanceError> {
        let p = dir.join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&p).map_err(io(format!("failed to create {}", p.display())))
    };
    for d in ["proc", "dev", "sys", "tmp", "etc", "run", "storage"] {
        mkdir(d)?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
        .map_err(io("failed to set the mode of /tmp".into()))?;
    for d in &top.mount_dirs {
        mkdir(d)?;
    }
    let mut files = vec!["/state.dat".to_string()];
    files.extend(top.mount_files.iter().cloned());
    for f in &files {
        let p = dir.join(f.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("failed to create {}", parent.display())))?;
        }
        std::fs::write(&p, b"").map_err(io(format!("failed to create {}", p.display())))?;
    }
    let mut hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".to_string();
    // The hostname names the instance's own address when it has one, else loopback.
    let own = top
        .hosts
        .iter()
        .any(|h| h.split_whitespace().skip(1).any(|n| n == top.hostname));
    if !own {
        hosts.push_str(&format!("127.0.1.1\t{}\n", top.hostname));
    }
    for h in &top.hosts {
        hosts.push_str(h);
        hosts.push('\n');
    }
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::write(&p, text)
            .and_then(|()| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)))
            .map_err(io(format!("failed to write {}", p.display())))
    };
    write("etc/hosts", &hosts)?;
    write("etc/resolv.conf", &top.resolv_conf)?;
    write("etc/hostname", &format!("{}\n", top.hostname))?;
    Ok(())
}

/// Where the small directories of one instance go.
#[derive(Clone, Debug)]
pub struct RunDirs {
    /// The instance's directory on the tmpfs.
    pub root: PathBuf,
}

impl RunDirs {
    /// The top layer.
    pub fn top(&self) -> PathBuf {
        self.root.join("top")
    }
    /// The stack fixups layer.
    pub fn fixups(&self) -> PathBuf {
        self.root.join("fixups")
    }
    /// The whiteouts over the host base.
    pub fn base(&self) -> PathBuf {
        self.root.join("base")
    }
}

/// Prepares the directories of one instance (from scratch) and returns the overlay mount.
/// `host_base`: the host's `/` and the binds to keep, or `None` for an image with its own OS.
pub fn prepare(
    dirs: &RunDirs,
    layers: &[StackLayer],
    host_base: Option<(&Path, &[String])>,
    top: &TopLayer,
) -> Result<RootfsMount, InstanceError> {
    if dirs.root.exists() {
        std::fs::remove_dir_all(&dirs.root)
            .map_err(io(format!("failed to clear {}", dirs.root.display())))?;
    }
    write_top(&dirs.top(), top)?;
    std::fs::create_dir_all(dirs.fixups())
        .map_err(io(format!("failed to create {}", dirs.fixups().display())))?;
    write_fixups(&dirs.fixups(), &fixups(layers)).map_err(|source| InstanceError::Layers {
        what: "failed to write the stack fixups".into(),
        source,
    })?;
    let mut lower = vec![dirs.top(), dirs.fixups()];
    lower.extend(layers.iter().rev().map(|l| l.root.clone()));
    if let Some((root, keep)) = host_base {
        write_host_whiteouts(&dirs.base(), root, keep)?;
        lower.push(dirs.base());
        lower.push(root.to_path_buf());
    }
    let joined: Vec<String> = lower.iter().map(|p| p.display().to_string()).collect();
    if joined.iter().any(|p| p.contains(':') || p.contains(',')) {
        return Err(InstanceError::Rootfs(
            "a layer path holds ':' or ',' and cannot be an overlay lower dir".into(),
        ));
    }
    Ok(RootfsMount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec![format!("lowerdir={}", joined.join(":"))],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_stack_in_oci_order_below_the_top_and_above_the_host_base() {
        let tmp = tempfile::tempdir().unwrap();
        let host = tmp.path().join("host");
        for d in ["usr", "etc", "home", "bin"] {
            std::fs::create_dir_all(host.join(d)).unwrap();
        }
        let l1 = tmp.path().join("l1");
        let l2 = tmp.path().join("l2");
        std::fs::create_dir_all(&l1).unwrap();
        std::fs::create_dir_all(&l2).unwrap();
        let dirs = RunDirs {
            root: tmp.path().join("run"),
        };
        let layers = [
            StackLayer {
                root: l1.clone(),
                implicit_dirs: Default::default(),
            },
            StackLayer {
                root: l2.clone(),
                implicit_dirs: Default::default(),
            },
        ];
        let keep = ["usr".to_string(), "bin".to_string()];
        let top = TopLayer {
            hostname: "svc".into(),
            resolv_conf: "nameserver 10.0.0.1\n".into(),
            mount_dirs: vec!["/dev/camera".into()],
            ..TopLayer::default()
        };
        let m = prepare(&dirs, &layers, Some((&host, &keep)), &top).unwrap();
        let expect = [dirs.top(), dirs.fixups(), l2, l1, dirs.base(), host.clone()]
            .map(|p| p.display().to_string())
            .join(":");
        assert_eq!(m.options, vec![format!("lowerdir={expect}")]);
        let mut hidden: Vec<String> = std::fs::read_dir(dirs.base())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        hidden.sort();
        assert_eq!(hidden, ["etc", "home"]);
        let top_dir = dirs.top();
        assert!(top_dir.join("dev/camera").is_dir());
        assert!(top_dir.join("state.dat").is_file());
        assert!(std::fs::read_to_string(top_dir.join("etc/hosts"))
            .unwrap()
            .contains("svc"));
        assert_eq!(
            std::fs::read_to_string(top_dir.join("etc/resolv.conf")).unwrap(),
            "nameserver 10.0.0.1\n"
        );

        // An image with its own OS has no host base.
        let m = prepare(&dirs, &layers[..1], None, &top).unwrap();
        assert!(!m.options[0].contains(&host.display().to_string()));
        assert!(!dirs.base().exists(), "prepare starts from scratch");
    }
}
