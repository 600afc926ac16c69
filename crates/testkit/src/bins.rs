//! The workspace's built binaries as tests find them: beside the test executable
//! (`target/debug`), or in `AOS_BIN_DIR`.

use std::path::PathBuf;

/// The directory of the built binaries (`target/debug`), next to the test executable's `deps/`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("AOS_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let mut dir = exe
        .parent()
        .expect("the executable is in a directory")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The path of a built binary; panics with the command to build it when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins), or run hack/test.sh",
        p.display()
    );
    p
}
