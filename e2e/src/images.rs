//! Helpers of the image suites: Items from YAML, an aosd with quick retries, the image
//! store's directories, archives of one small layer, and an aosd on a small disk.

use std::path::Path;
use std::process::Command;

use aos_testkit::image::file;
use aos_testkit::ImageBuilder;

use crate::{Aosd, AosdOptions};

pub fn item_yaml(name: &str, item_id: &str, version: &str, source: &str) -> String {
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: {name}\nspec:\n  itemId: {item_id}\n  version: \"{version}\"\n  source:\n    {source}\n"
    )
}

pub fn apply(aosd: &Aosd, yaml: &str) {
    let path = aosd.path().join(format!("m{}.yaml", rand_suffix()));
    std::fs::write(&path, yaml).unwrap();
    aosd.ok(&["apply", "-f", path.to_str().unwrap()]);
}

pub fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

pub fn images_dir(aosd: &Aosd) -> std::path::PathBuf {
    aosd.path().join("data/images")
}

pub fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

pub fn start_with(config: &str) -> Aosd {
    Aosd::start_with(AosdOptions {
        config: Some(format!(
            "[controllers]\nbackoff_base = \"200ms\"\nbackoff_max = \"2s\"\n{config}"
        )),
        ..Default::default()
    })
}

pub fn archive_item(dir: &Path, name: &str, marker: &str) -> (aos_testkit::BuiltImage, String) {
    let built = ImageBuilder::new()
        .layer(&[file(&format!("{marker}.txt"), marker.as_bytes())])
        .write_layout(&dir.join(name), "1");
    let source = format!("archive: {}", built.layout.display());
    (built, source)
}

/// Bytes no compressor shrinks.
pub fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 7;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// An aosd whose images live on a tmpfs of `mib` MiB (4 of them kept free), and that tmpfs.
pub fn on_a_small_disk(mib: u64) -> (Aosd, std::path::PathBuf) {
    let mut aosd = start_with("[images]\nkeep_free_mib = 4\n");
    let data = aosd.path().join("data/images");
    let tmpfs = aosd.path().join("small-fs");
    std::fs::create_dir_all(&tmpfs).unwrap();
    assert!(Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(&tmpfs)
        .status()
        .unwrap()
        .success());
    aosd.terminate();
    std::fs::remove_dir_all(&data).unwrap();
    std::os::unix::fs::symlink(&tmpfs, &data).unwrap();
    aosd.restart();
    (aosd, tmpfs)
}
