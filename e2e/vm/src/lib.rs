//! The harness of the VM suite: a copy of the device `hack/vm/build.sh` made (its disk and its
//! OVMF variables) per test, booted under qemu with the serial console read into memory; the
//! host drops files into the data partition's `inbox/` while the VM is off (the root's init
//! applies them with aosctl), waits for `AOS-VM:` lines, and cuts the power by killing qemu.
//! Needs root (the data partition is loop-mounted) and the image in `target/vm`
//! (`hack/test.sh` builds it); `AOSD_SKIP_VM=1` skips the suite.
// Test support: a failed step is a failed test, and panics say which.
#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aos_e2e::run_ok;

/// Whether the suite is skipped (`AOSD_SKIP_VM=1`, which CI never sets).
pub fn skipped() -> bool {
    if std::env::var("AOSD_SKIP_VM").as_deref() == Ok("1") {
        eprintln!("AOSD_SKIP_VM=1: the VM suite is skipped");
        return true;
    }
    false
}

/// Where hack/vm/build.sh left the image.
pub fn image_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/vm");
    assert!(
        d.join("disk.img").exists(),
        "no VM image in {}: run hack/vm/build.sh (hack/test.sh does)",
        d.display()
    );
    d
}

pub mod rootfs;

/// The disk's partitions (hack/vm/build.sh): boot_a, boot_b, the root, the data.
pub const ROOT: u32 = 3;
/// The data partition: aosd's store, the rootfs work directory, the inbox.
pub const DATA: u32 = 4;

/// What a boot component does once written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boot {
    /// Boots and passes its health check.
    Healthy,
    /// Boots and fails its health check.
    Unhealthy,
    /// Does not boot (the firmware cannot load it).
    Unbootable,
}

/// One device: its own disk and variables, and qemu while it runs.
pub struct Vm {
    dir: tempfile::TempDir,
    qemu: Option<Child>,
    console: Arc<Mutex<String>>,
    started: Instant,
}

impl Vm {
    /// A device as it leaves the factory (a copy of the built image).
    pub fn new() -> Vm {
        let src = image_dir();
        let dir = tempfile::Builder::new()
            .prefix("aos-vm-")
            .tempdir()
            .unwrap();
        run_ok(
            Command::new("cp")
                .arg("--sparse=always")
                .arg(src.join("disk.img"))
                .arg(src.join("vars.fd"))
                .arg(dir.path()),
        );
        Vm {
            dir,
            qemu: None,
            console: Arc::default(),
            started: Instant::now(),
        }
    }

    /// The image of the UKI the boot partitions hold.
    pub fn uki() -> PathBuf {
        image_dir().join("uki.efi")
    }

    /// A working directory of this test.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies `files` into the data partition's `inbox/` (the VM must be off).
    pub fn drop_files(&self, files: &[&Path]) {
        self.with_partition(DATA, false, |mnt| {
            std::fs::create_dir_all(mnt.join("inbox")).unwrap();
            for f in files {
                std::fs::copy(f, mnt.join("inbox").join(f.file_name().unwrap())).unwrap();
            }
        });
    }

    /// Runs `f` on the block device of partition `n` of the disk (the VM must be off), and
    /// frees the loop device whatever `f` does.
    pub fn with_partition_device<T>(&self, n: u32, f: impl FnOnce(&Path) -> T) -> T {
        assert!(self.qemu.is_none(), "touch the disk while the VM is off");
        let disk = self.dir.path().join("disk.img");
        let dev = run_ok(
            Command::new("losetup")
                .args(["-P", "--show", "-f"])
                .arg(&disk),
        )
        .trim()
        .to_string();
        let part = PathBuf::from(format!("{dev}p{n}"));
        if !part.exists() {
            let _ = Command::new("partx").args(["-a", &dev]).output();
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&part)));
        let _ = Command::new("losetup").args(["-d", &dev]).output();
        r.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Runs `f` on partition `n` (ext4) mounted on the host while the VM is off.
    pub fn with_partition<T>(&self, n: u32, read_only: bool, f: impl FnOnce(&Path) -> T) -> T {
        let mnt = self.dir.path().join(format!("mnt{n}"));
        std::fs::create_dir_all(&mnt).unwrap();
        self.with_partition_device(n, |part| {
            let mut mount = Command::new("mount");
            if read_only {
                mount.args(["-o", "ro"]);
            }
            run_ok(mount.arg(part).arg(&mnt));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mnt)));
            let _ = Command::new("umount").arg(&mnt).output();
            r.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Replaces the loader on boot partition `n` (FAT, written with mtools: the host need
    /// not mount vfat) with bytes no firmware loads.
    pub fn break_boot_partition(&self, n: u32) {
        let junk = self.dir.path().join("junk.efi");
        std::fs::write(&junk, vec![0x5au8; 1 << 16]).unwrap();
        self.with_partition_device(n, |part| {
            run_ok(
                Command::new("mcopy")
                    .arg("-o")
                    .arg("-i")
                    .arg(part)
                    .arg(&junk)
                    .arg("::/EFI/BOOT/BOOTX64.EFI"),
            );
        });
    }

    /// Waits for a row of the `kind` watch (`boot` or `rootfs`) in `phase` after the offset
    /// `from`; returns the offset of its end and its cells from NAME on.
    pub fn wait_row(
        &self,
        from: usize,
        kind: &str,
        phase: &str,
        secs: u64,
    ) -> (usize, Vec<String>) {
        let prefix = format!("AOS-VM: {kind} ");
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.console();
            let mut at = from.min(c.len());
            for line in c[at..].split_inclusive('\n') {
                at += line.len();
                let Some(rest) = line.trim_end().strip_prefix(&prefix) else {
                    continue;
                };
                let cells: Vec<String> = rest.split_whitespace().map(String::from).collect();
                if cells.get(2).map(String::as_str) == Some(phase) && line.ends_with('\n') {
                    return (at, cells);
                }
            }
            if Instant::now() > end {
                panic!(
                    "no {kind} row in phase {phase} on the console within {secs} s ({} s since the start); console:\n{c}",
                    self.started.elapsed().as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Powers the device on: qemu with OVMF, the disk on virtio, the console read in.
    pub fn boot(&mut self) {
        assert!(self.qemu.is_none(), "the VM runs already");
        let accel = if std::env::var("AOSD_VM_KVM").as_deref() == Ok("1") {
            "kvm"
        } else {
            "tcg"
        };
        let d = self.dir.path();
        let mut child = Command::new("qemu-system-x86_64")
            .args(["-machine", &format!("q35,accel={accel}")])
            .args(["-m", "1024", "-smp", "2", "-nographic", "-no-user-config"])
            .args([
                "-drive",
                "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
            ])
            .args([
                "-drive",
                &format!("if=pflash,format=raw,file={}", d.join("vars.fd").display()),
            ])
            .args([
                "-drive",
                &format!("file={},format=raw,if=virtio", d.join("disk.img").display()),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64 starts (hack/vm/build.sh installs it)");
        let mut out = child.stdout.take().unwrap();
        let console = self.console.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                console.lock().unwrap().push_str(&text);
            }
        });
        self.qemu = Some(child);
    }

    /// Cuts the power (kills qemu).
    pub fn power_cut(&mut self) {
        if let Some(mut q) = self.qemu.take() {
            let _ = q.kill();
            let _ = q.wait();
        }
        // The console thread ends with qemu's stdout.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// The console so far.
    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits until a console line after the offset `from` contains `pat`; returns the offset of
    /// that line's end and the line. Panics with the whole console after `secs`.
    pub fn wait_line(&self, from: usize, pat: &str, secs: u64) -> (usize, String) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.console();
            if let Some(i) = c.get(from..).and_then(|s| s.find(pat)) {
                let start = from + i;
                let line_start = c[..start].rfind('\n').map_or(0, |p| p + 1);
                let line_end = c[start..].find('\n').map_or(c.len(), |p| start + p);
                return (line_end, c[line_start..line_end].to_string());
            }
            if Instant::now() > end {
                panic!(
                    "no {pat:?} on the console within {secs} s ({} s since the start); console:\n{c}",
                    self.started.elapsed().as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Makes a boot component: a FAT partition image with the VM's UKI and `version`.
    pub fn boot_component(&self, version: &str) -> PathBuf {
        self.boot_component_of(version, Boot::Healthy)
    }

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

impl Default for Vm {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.power_cut();
        if std::thread::panicking() {
            eprintln!("VM console:\n{}", self.console());
        }
    }
}
