//! Boot components for the VM: FAT partition images holding the VM's unified kernel image
//! (as built, with a command line that fails the health check, or bytes no firmware loads)
//! and a version file, packed with aosctl's packer, and the manifest that asks for one.

use std::path::PathBuf;
use std::process::Command;

use aos_e2e::run_ok;

use crate::{Boot, Vm};

impl Vm {
    /// The UKI a component of `kind` holds: the VM's, one whose command line fails the health
    /// check, or bytes that are no EFI program.
    fn loader(&self, kind: Boot) -> PathBuf {
        let d = self.dir.path();
        match kind {
            Boot::Healthy => Self::uki(),
            Boot::Unhealthy => {
                let cmd = d.join("cmdline");
                std::fs::write(&cmd, "console=ttyS0 panic=-1 quiet aos.unhealthy").unwrap();
                let out = d.join("unhealthy.efi");
                run_ok(
                    Command::new("objcopy")
                        .args(["--remove-section", ".cmdline", "--add-section"])
                        .arg(format!(".cmdline={}", cmd.display()))
                        .args(["--change-section-vma", ".cmdline=0x30000"])
                        .arg(Self::uki())
                        .arg(&out),
                );
                out
            }
            Boot::Unbootable => {
                let out = d.join("corrupt.efi");
                std::fs::write(&out, vec![0x5au8; 1 << 16]).unwrap();
                out
            }
        }
    }

    /// Makes a boot component of `kind`.
    pub fn boot_component_of(&self, version: &str, kind: Boot) -> PathBuf {
        let d = self.dir.path();
        let fat = d.join(format!("boot-{version}.fat"));
        let _ = std::fs::remove_file(&fat);
        run_ok(Command::new("truncate").args(["-s", "32M"]).arg(&fat));
        run_ok(Command::new("mkfs.vfat").args(["-n", "AOSBOOT"]).arg(&fat));
        let img = fat.to_str().unwrap();
        run_ok(Command::new("mmd").args([
            "-i",
            img,
            "::/EFI",
            "::/EFI/BOOT",
            "::/etc",
            "::/etc/aos",
        ]));
        run_ok(
            Command::new("mcopy")
                .args(["-i", img])
                .arg(self.loader(kind))
                .arg("::/EFI/BOOT/BOOTX64.EFI"),
        );
        let v = d.join("version");
        std::fs::write(&v, format!("{version}\n")).unwrap();
        run_ok(
            Command::new("mcopy")
                .args(["-i", img])
                .arg(&v)
                .arg("::/etc/aos/version"),
        );
        let archive = d.join(format!("boot-{version}.tar"));
        aosctl::pack::pack_boot(&fat, &archive, "linux", "amd64").unwrap();
        archive
    }

    /// Drops a boot update to `version` of `kind` (its component and manifest) into the inbox.
    pub fn drop_boot_update(&self, version: &str, kind: Boot) {
        let archive = self.boot_component_of(version, kind);
        let yaml = self.boot_update_yaml(version);
        self.drop_files(&[&archive, &yaml]);
    }

    /// The manifest of a boot update to `version` from the archive dropped in the inbox.
    pub fn boot_update_yaml(&self, version: &str) -> PathBuf {
        let p = self.dir.path().join(format!("os-{version}.yaml"));
        std::fs::write(
            &p,
            format!(
                "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: os-{version}\nspec:\n  itemId: os\n  version: \"{version}\"\n  type: component\n  source:\n    archive: /data/inbox/boot-{version}.tar\n---\napiVersion: aos.edge/v1alpha1\nkind: BootSlot\nmetadata:\n  name: vm\nspec:\n  item:\n    itemId: os\n    version: \"{version}\"\n"
            ),
        )
        .unwrap();
        p
    }
}
