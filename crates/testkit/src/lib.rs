//! Test fixtures, all built locally: OCI image layouts from file lists (with whiteouts, opaque
//! directories and hostile entries), a real registry process (Debian's `docker-registry`) with
//! `skopeo` pushes, and an HTTP server of image layouts that can drop connections, corrupt bytes,
//! ignore ranges and throttle.
// Test support: a fixture that fails fails its test.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

pub mod certs;
pub mod containerd;
pub mod etcd;
pub mod httpserver;
pub mod image;
pub mod registry;
pub mod tree;

mod bins;
pub use bins::{bin, bin_dir};

pub use etcd::EtcdCluster;
pub use httpserver::{Faults, HttpServer};
pub use image::{BuiltImage, Entry, ImageBuilder};
pub use registry::Registry;

/// Whether a command exists on PATH.
pub fn have(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}
