//! The slot ports on real block devices: a GPT disk on a loop device (made with sfdisk), its
//! partitions named as the firmware names them (number, start, size, GUID), a boot entry for
//! one of them that efibootmgr's own reader parses back, an ext4 image written to the other,
//! read back and its version file read, and an image with a wrong digest that leaves the
//! partition as it was; the A/B slots found from the booted partition's GUID and GPT names.
//! Needs root; detaches its loop device pass or fail.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aos_slots::device::{partition_of, SlotDevice};
use aos_slots::efi::{BootVars, EfiDir, HardDrive, LoadOption, GLOBAL_GUID};
use aos_slots::partition::{derive_slots, partition_by_guid};
use aos_slots::SlotsError;
use sha2::{Digest, Sha256};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A loop device over a GPT disk image with two 4 MiB partitions.
struct Disk {
    dev: String,
    /// The GPT GUIDs of partitions 1 and 2 (new for every disk: tests run side by side).
    guid_a: uuid::Uuid,
    guid_b: uuid::Uuid,
    _dir: tempfile::TempDir,
}

impl Disk {
    fn new() -> Disk {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let (guid_a, guid_b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        let table = format!(
            "label: gpt\nstart=2048, size=8192, uuid={guid_a}, name=boot_a\nstart=10240, size=8192, uuid={guid_b}, name=boot_b\nstart=18432, size=8192, name=boot_recovery\n"
        );
        let mut sfdisk = Command::new("sfdisk")
            .arg("-q")
            .arg(&img)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        sfdisk
            .stdin
            .take()
            .unwrap()
            .write_all(table.as_bytes())
            .unwrap();
        assert!(sfdisk.wait().unwrap().success());
        let dev = run(Command::new("losetup")
            .args(["-P", "--show", "-f"])
            .arg(&img))
        .trim()
        .to_string();
        let disk = Disk {
            dev,
            guid_a,
            guid_b,
            _dir: dir,
        };
        // Where the kernel did not scan the table at attach (some containers), partx does.
        if !Path::new(&disk.part(1)).exists() {
            let _ = Command::new("partx").args(["-a", &disk.dev]).output();
        }
        disk
    }

    fn part(&self, n: u32) -> String {
        format!("{}p{n}", self.dev)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn gzip_file(dir: &Path, bytes: &[u8]) -> (PathBuf, String) {
    let gz = aos_testkit::image::gzip(bytes);
    let p = dir.join("image.gz");
    std::fs::write(&p, &gz).unwrap();
    (p, sha(&gz))
}

#[test]
fn a_gpt_partition_is_named_as_the_firmware_names_it_and_efibootmgr_reads_our_entry() {
    let disk = Disk::new();
    let hd = partition_of(Path::new(&disk.part(2))).unwrap();
    assert_eq!(
        hd,
        HardDrive {
            number: 2,
            start: 10240,
            size: 8192,
            guid: disk.guid_b,
        }
    );
    assert!(
        matches!(partition_of(Path::new(&disk.dev)), Err(SlotsError::BadImage(m)) if m.contains("not a partition")),
        "a whole disk is refused"
    );
    let vars = tempfile::tempdir().unwrap();
    let efi = EfiDir::new(vars.path()).unwrap();
    let v = BootVars(&efi);
    v.set_entry(
        1,
        &LoadOption::new("aosd b", hd, "\\EFI\\BOOT\\BOOTX64.EFI"),
    )
    .unwrap();
    let file = vars.path().join(format!("Boot0001-{GLOBAL_GUID}"));
    let dump = run(Command::new("efibootdump").arg("-f").arg(&file));
    assert!(
        dump.contains(&format!(
            "HD(2,GPT,{},0x2800,0x2000)/File(\\EFI\\BOOT\\BOOTX64.EFI)",
            disk.guid_b
        )),
        "efibootdump says: {dump}"
    );
    assert!(dump.contains("aosd b"), "efibootdump says: {dump}");
}

#[test]
fn an_image_is_written_to_a_partition_read_back_and_its_version_read() {
    let disk = Disk::new();
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/version"), "2.0\nbuilt today\n").unwrap();
    let fs = work.path().join("fs.img");
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&tree)
        .arg(&fs)
        .arg("4M"));
    let bytes = std::fs::read(&fs).unwrap();
    let (gz, digest) = gzip_file(work.path(), &bytes);
    let slot = SlotDevice::new(disk.part(1));
    assert_eq!(slot.size().unwrap(), 4 << 20);
    let w = slot.write_gzip(&gz, &digest).unwrap();
    assert_eq!(w.bytes, bytes.len() as u64);
    assert_eq!(w.digest, sha(&bytes));
    assert_eq!(
        slot.read_version("/etc/version").unwrap().as_deref(),
        Some("2.0")
    );
    assert_eq!(slot.read_version("etc/missing").unwrap(), None);
    // The other partition holds no filesystem: no version, no error.
    assert_eq!(
        SlotDevice::new(disk.part(2))
            .read_version("etc/version")
            .unwrap(),
        None
    );

    // A wrong digest: refused, and the partition keeps every byte.
    let (gz2, _) = gzip_file(work.path(), &vec![9u8; 1 << 20]);
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let err = slot.write_gzip(&gz2, wrong).unwrap_err();
    assert_eq!(err.reason(), "DigestMismatch");
    let mut back = vec![0u8; bytes.len()];
    use std::io::Read;
    std::fs::File::open(disk.part(1))
        .unwrap()
        .read_exact(&mut back)
        .unwrap();
    assert_eq!(sha(&back), sha(&bytes));
}

#[test]
fn the_slots_are_found_from_the_booted_partition_by_guid_and_name() {
    let disk = Disk::new();
    let booted = partition_by_guid(&disk.guid_b).unwrap();
    assert_eq!(booted, Path::new(&disk.part(2)));
    let a = partition_by_guid(&disk.guid_a).unwrap();
    assert_eq!(a, Path::new(&disk.part(1)));
    let d = derive_slots(&booted).unwrap();
    assert_eq!(d.a, Path::new(&disk.part(1)));
    assert_eq!(d.b, Path::new(&disk.part(2)));
    assert_eq!(d.recovery.as_deref(), Some(Path::new(&disk.part(3))));
    let err = derive_slots(Path::new(&disk.part(3))).unwrap_err();
    assert!(
        err.to_string().contains("not <name>_a or <name>_b"),
        "{err}"
    );
}
