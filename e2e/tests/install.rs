//! The Debian package as a user installs it: hack/package.sh builds it from the built binaries,
//! dpkg installs it for real (binaries, unit, config, group), `systemd-analyze verify` accepts
//! the unit, the installed aosd serves its socket to the `aosd` group, and a purge takes every
//! file back. The test changes the host's packages, as installing does; it refuses to run where
//! an aosd package is already installed.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn installed() -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "aosd"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
}

/// Purges the package (and the group, if the test made it) however the test ends.
struct Purge {
    group_was_there: bool,
}

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "aosd"]).output();
        if !self.group_was_there {
            let _ = Command::new("groupdel").arg("aosd").status();
        }
    }
}

fn group_exists() -> bool {
    Command::new("getent")
        .args(["group", "aosd"])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn the_package_installs_a_verified_unit_and_a_working_aosd_and_purges_cleanly() {
    assert!(
        !installed(),
        "an aosd package is installed on this host: this test installs and purges its own; remove it first"
    );
    let tmp = tempfile::tempdir().unwrap();
    let deb = aos_e2e::run_ok(
        Command::new(repo().join("hack/package.sh"))
            .arg(tmp.path())
            .env("BINS", aos_e2e::bin_dir())
            .env("COMPRESS", "none"),
    );
    let _purge = Purge {
        group_was_there: group_exists(),
    };
    aos_e2e::run_ok(Command::new("dpkg").args(["-i", &deb]));

    for f in [
        "/usr/bin/aosd",
        "/usr/bin/aosctl",
        "/usr/bin/aos-logger",
        "/usr/bin/containerd-shim-aos-v1",
        "/lib/systemd/system/aosd.service",
        "/usr/share/aosd/containerd.toml",
        "/usr/share/aosd/aos-rootfs",
        "/usr/share/bash-completion/completions/aosctl",
    ] {
        assert!(Path::new(f).exists(), "{f} is not installed");
    }
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/lib/systemd/system/aosd.service"])
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let unit = std::fs::read_to_string("/lib/systemd/system/aosd.service").unwrap();
    for line in [
        "KillMode=process",
        "After=containerd.service",
        "RuntimeDirectory=aosd",
    ] {
        assert!(unit.contains(line), "{line} missing from the unit");
    }
    assert!(group_exists(), "the package creates the aosd group");
    let config = std::fs::read_to_string("/etc/aosd/aosd.toml").unwrap();
    let defaults = Command::new("/usr/bin/aosd")
        .arg("--print-default-config")
        .output()
        .unwrap();
    assert_eq!(config, String::from_utf8_lossy(&defaults.stdout));

    // The installed binaries work together: aosd with the installed config (data and socket
    // moved aside), aosctl against it.
    let socket = tmp.path().join("aosd.sock");
    let mut aosd = Command::new("/usr/bin/aosd")
        .args(["--config", "/etc/aosd/aosd.toml", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--socket")
        .arg(&socket)
        .arg("--containerd-socket")
        .arg(tmp.path().join("none.sock"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let health = loop {
        let out = Command::new("/usr/bin/aosctl")
            .arg("--socket")
            .arg(&socket)
            .arg("health")
            .output()
            .unwrap();
        if out.status.success() || start.elapsed() > Duration::from_secs(20) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = aosd.kill();
    let _ = aosd.wait();
    assert!(
        health.status.success(),
        "{}",
        String::from_utf8_lossy(&health.stderr)
    );
    assert!(String::from_utf8_lossy(&health.stdout).starts_with("ok"));

    aos_e2e::run_ok(Command::new("dpkg").args(["--purge", "aosd"]));
    for f in [
        "/usr/bin/aosd",
        "/lib/systemd/system/aosd.service",
        "/etc/aosd/aosd.toml",
    ] {
        assert!(!Path::new(f).exists(), "{f} is left after a purge");
    }
}
