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

/// Whether the VMs are left running when their scenario ends (`AOSD_VM_KEEP=1`), to look
/// inside.
pub fn keep() -> bool {
    std::env::var("AOSD_VM_KEEP").as_deref() == Ok("1")
}

/// qemu's accelerator: KVM when `AOSD_VM_KVM=1`, else TCG with one host thread for both
/// vCPUs (`thread=single`). Multi-threaded TCG once left a guest with both vCPUs spinning in
/// the kernel for minutes (soft lockups in runc and runc init at the first container start,
/// in a CI run with two VMs on two cores); one thread per VM also keeps two VMs from
/// contending for both host cores. `AOSD_VM_TCG_THREAD=multi` runs multi-threaded TCG.
pub fn accel() -> &'static str {
    if std::env::var("AOSD_VM_KVM").as_deref() == Ok("1") {
        return "kvm";
    }
    match std::env::var("AOSD_VM_TCG_THREAD").as_deref() {
        Ok("multi") => "tcg,thread=multi",
        _ => "tcg,thread=single",
    }
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

pub mod api;
pub mod boot;
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
    /// When each piece of the console arrived: (offset of its end, time since the start).
    arrivals: Arc<Mutex<Vec<(usize, Duration)>>>,
    started: Instant,
    /// The host port qemu forwards to the guest's API relay, once [`Vm::network`] was called.
    api_port: Option<u16>,
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
            arrivals: Arc::default(),
            started: Instant::now(),
            api_port: None,
        }
    }

    /// Gives the device a network card on qemu's user network from its next boot: the host
    /// (its registry) is 10.0.2.2 to the guest, and [`Vm::aosctl`] reaches aosd inside.
    pub fn network(&mut self) {
        if self.api_port.is_none() {
            let port = aos_e2e::node::free_port();
            api::relay(self.api_socket(), port);
            self.api_port = Some(port);
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
        let what = format!("no {kind} row in phase {phase} on the console");
        poll(secs, &what, self.started, &self.console, || {
            let c = self.console();
            let mut at = from.min(c.len());
            for line in c[at..].split_inclusive('\n') {
                at += line.len();
                let Some(rest) = line.trim_end().strip_prefix(&prefix) else {
                    continue;
                };
                let cells: Vec<String> = rest.split_whitespace().map(String::from).collect();
                if cells.get(2).map(String::as_str) == Some(phase) && line.ends_with('\n') {
                    return Some((at, cells));
                }
            }
            None
        })
    }

    /// Powers the device on: qemu with OVMF, the disk on virtio, the console read in.
    pub fn boot(&mut self) {
        assert!(self.qemu.is_none(), "the VM runs already");
        let accel = accel();
        let d = self.dir.path();
        let mut qemu = Command::new("qemu-system-x86_64");
        match self.api_port {
            // No option ROM: the firmware does not try to boot from the network.
            Some(port) => qemu
                .args([
                    "-netdev",
                    &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:7070"),
                ])
                .args(["-device", "virtio-net-pci,netdev=n0,romfile="]),
            None => qemu.args(["-nic", "none"]),
        };
        let mut child = qemu
            .args(["-machine", "q35", "-accel", accel])
            .args(["-m", "1024", "-smp", "2", "-no-user-config"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            // A root shell on the second serial port, for a kept VM (AOSD_VM_KEEP=1).
            .arg("-serial")
            .arg(format!(
                "unix:{},server=on,wait=off",
                d.join("shell.sock").display()
            ))
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
        let arrivals = self.arrivals.clone();
        let started = self.started;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
                let mut c = console.lock().unwrap();
                c.push_str(&text);
                arrivals.lock().unwrap().push((c.len(), started.elapsed()));
            }
        });
        self.qemu = Some(child);
    }

    /// Arms a power cut at a named step of an OS update (`boot:write`, `rootfs:stage:copied`;
    /// the names are aos_slots::crash's points): aosd powers the VM off when it gets there, in
    /// this boot or a later one. The VM must be off.
    pub fn arm_power_cut(&self, point: &str) {
        self.with_partition(DATA, false, |mnt| {
            std::fs::write(mnt.join("crashpoint"), point).unwrap();
        });
    }

    /// Replaces aosd's config for the next boots with `edit` applied to the image's.
    pub fn configure(&self, edit: impl FnOnce(String) -> String) {
        let base = std::fs::read_to_string(image_dir().join("rootfs/etc/aosd/aosd.toml")).unwrap();
        let conf = edit(base);
        self.with_partition(DATA, false, |mnt| {
            std::fs::write(mnt.join("aosd.toml"), conf).unwrap();
        });
    }

    /// Waits until the VM powers itself off (qemu exits); panics with the console after `secs`.
    pub fn wait_off(&mut self, secs: u64) {
        let (started, console) = (self.started, self.console.clone());
        let qemu = self.qemu.as_mut().expect("the VM runs");
        poll(secs, "the VM did not power off", started, &console, || {
            qemu.try_wait().unwrap().map(|_| ())
        });
        self.qemu = None;
        // The console thread ends with qemu's stdout.
        std::thread::sleep(Duration::from_millis(100));
    }

    /// The end of aosd's log on the data partition (every boot's), for a failed scenario.
    pub fn aosd_log_tail(&self, lines: usize) -> String {
        self.with_partition(DATA, true, |mnt| {
            let log = std::fs::read_to_string(mnt.join("log/aosd.log")).unwrap_or_default();
            let all: Vec<&str> = log.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        })
    }

    /// Leaves the VM running and its directory in place, and says how to get in.
    fn leave_running(&mut self) {
        let dir = self.dir.path().to_path_buf();
        let _ = std::fs::write(dir.join("console.log"), self.console());
        let pid = self.qemu.as_ref().map_or(0, Child::id);
        let api = self.api_port.map_or(String::new(), |port| {
            format!("  aosctl from the host: socat UNIX-LISTEN:{d}/api.sock,fork TCP:127.0.0.1:{port} & aosctl --socket {d}/api.sock get all\n", d = dir.display())
        });
        eprintln!(
            "AOSD_VM_KEEP=1: the VM runs on (qemu pid {pid}) in {d}; console so far in {d}/console.log\n  shell: socat -,raw,echo=0 UNIX-CONNECT:{d}/shell.sock   (then aosctl get all, tail /data/log/aosd.log)\n{api}  stop:  kill {pid}; rm -rf {d}",
            d = dir.display()
        );
        self.qemu = None;
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let _ = dir.keep();
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

    /// When the console up to `offset` had arrived, since the VM was made.
    pub fn time_at(&self, offset: usize) -> Duration {
        let a = self.arrivals.lock().unwrap();
        a.iter()
            .find(|(end, _)| *end >= offset)
            .or(a.last())
            .map_or(Duration::ZERO, |(_, t)| *t)
    }

    /// The console so far.
    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Waits until a whole console line after the offset `from` contains `pat`; returns the
    /// offset of that line's end and the line. Panics with the whole console after `secs`.
    pub fn wait_line(&self, from: usize, pat: &str, secs: u64) -> (usize, String) {
        let what = format!("no {pat:?} on the console");
        poll(secs, &what, self.started, &self.console, || {
            let c = self.console();
            // Only a whole line (its newline has arrived): a long one comes in pieces.
            let start = from + c.get(from..)?.find(pat)?;
            let line_start = c[..start].rfind('\n').map_or(0, |p| p + 1);
            let line_end = start + c[start..].find('\n')?;
            Some((line_end, c[line_start..line_end].to_string()))
        })
    }
}

/// Calls `f` every 200 ms until it gives a value; panics with `what`, the time since `started`
/// and the console after `secs`.
fn poll<T>(
    secs: u64,
    what: &str,
    started: Instant,
    console: &Mutex<String>,
    mut f: impl FnMut() -> Option<T>,
) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > end {
            // A copy: panicking with the lock held would poison it for the Drop that prints it.
            let c = console.lock().unwrap().clone();
            panic!(
                "{what} within {secs} s ({} s since the start); console:\n{c}",
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Default for Vm {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if keep() {
            return self.leave_running();
        }
        self.power_cut();
        if std::thread::panicking() {
            eprintln!("VM console:\n{}", self.console());
            // Not a second panic while unwinding: the log is shown if it can be read.
            if let Ok(log) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.aosd_log_tail(200)))
            {
                eprintln!("aosd's log (the last 200 lines):\n{log}");
            }
        }
    }
}
