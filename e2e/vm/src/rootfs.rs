//! Rootfs updates for the VM: trees made from the root hack/vm/build.sh built (kept in
//! `target/vm/rootfs`), packed as full or incremental components with aosctl's packer, and the
//! manifest that asks the node's RootfsSlot for one.

use std::path::{Path, PathBuf};
use std::process::Command;

use aos_e2e::run_ok;

use crate::{image_dir, Vm};

/// The file in the root whose first line is its version.
pub const VERSION_FILE: &str = "etc/aos/version";

/// The root tree of the built image (version `vm-1`).
pub fn base_tree() -> PathBuf {
    let t = image_dir().join("rootfs");
    assert!(
        t.join(VERSION_FILE).exists(),
        "no root tree in {}: run hack/vm/build.sh",
        t.display()
    );
    t
}

impl Vm {
    /// A copy of the built root that names `version`, to change and pack.
    pub fn rootfs_tree(&self, version: &str) -> PathBuf {
        let tree = self.path().join(format!("tree-{version}"));
        run_ok(Command::new("cp").arg("-a").arg(base_tree()).arg(&tree));
        std::fs::write(tree.join(VERSION_FILE), format!("{version}\n")).unwrap();
        tree
    }

    /// A copy of the built root that names `version` and holds `files` (path in the root,
    /// text), to pack.
    pub fn rootfs_tree_with(&self, version: &str, files: &[(&str, &str)]) -> PathBuf {
        let tree = self.rootfs_tree(version);
        for (path, text) in files {
            std::fs::write(tree.join(path), text).unwrap();
        }
        tree
    }

    /// Packs `tree` as a rootfs component: full, or incremental against the built root.
    pub fn rootfs_component(&self, tree: &Path, incremental: bool) -> PathBuf {
        let name = tree.file_name().unwrap().to_string_lossy().to_string();
        let archive = self.path().join(format!("rootfs-{name}.tar"));
        let base = incremental.then(base_tree);
        aosctl::pack::pack_rootfs(
            tree,
            base.as_deref(),
            VERSION_FILE,
            &archive,
            "linux",
            "amd64",
        )
        .unwrap();
        archive
    }

    /// The manifest of a rootfs update to `version` from `archive` once it is in the inbox.
    pub fn rootfs_update_yaml(&self, version: &str, archive: &Path) -> PathBuf {
        let p = self.path().join(format!("rootfs-{version}.yaml"));
        let file = archive.file_name().unwrap().to_string_lossy();
        std::fs::write(
            &p,
            format!(
                "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: rootfs-{version}\nspec:\n  itemId: rootfs\n  version: \"{version}\"\n  type: component\n  source:\n    archive: /data/inbox/{file}\n---\napiVersion: aos.edge/v1alpha1\nkind: RootfsSlot\nmetadata:\n  name: vm\nspec:\n  item:\n    itemId: rootfs\n    version: \"{version}\"\n"
            ),
        )
        .unwrap();
        p
    }

    /// Drops the update of `tree` (full or incremental) into the inbox.
    pub fn drop_rootfs_update(&self, tree: &Path, incremental: bool) {
        let version = std::fs::read_to_string(tree.join(VERSION_FILE)).unwrap();
        let archive = self.rootfs_component(tree, incremental);
        let yaml = self.rootfs_update_yaml(version.trim(), &archive);
        self.drop_files(&[&archive, &yaml]);
    }

    /// Runs `f` on the device's root partition, read-only, while the VM is off.
    pub fn with_root<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        self.with_partition(crate::ROOT, true, f)
    }
}
