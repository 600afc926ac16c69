//! Disk space and retention of the image store: a full disk fails an install with
//! NotEnoughSpace and touches nothing else, an install that fits is admitted, cached versions
//! stay within the limit (whether items arrive or go), and an Item pointed at another image lets
//! go of its old layers.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aos_e2e::images::*;
use aos_testkit::image::{file, Entry};
use aos_testkit::ImageBuilder;

#[test]
fn a_full_disk_fails_the_item_with_not_enough_space_and_touches_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let small = ImageBuilder::new()
        .layer(&[file("small", b"small")])
        .write_layout(&dir.path().join("small"), "1");
    let big = ImageBuilder::new()
        .layer(&[Entry::File("big".into(), noise(24_000_000), 0o644)])
        .write_layout(&dir.path().join("big"), "1");
    let (aosd, tmpfs) = on_a_small_disk(48);
    apply(
        &aosd,
        &item_yaml(
            "small",
            "s",
            "1",
            &format!("archive: {}", small.layout.display()),
        ),
    );
    aosd.ok(&[
        "wait",
        "item/small",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    apply(
        &aosd,
        &item_yaml(
            "big",
            "b",
            "1",
            &format!("archive: {}", big.layout.display()),
        ),
    );
    let b = aosd.until("item", "big", 30, |v| v["status"]["phase"] == "Failed");
    assert_eq!(
        b["status"]["conditions"][0]["reason"], "NotEnoughSpace",
        "{b:#}"
    );
    // The small item is untouched and still mounted.
    assert_eq!(aosd.json("item", "small")["status"]["phase"], "Ready");
    let l = aosd.json("layer", &small.layers[0].0.replace(':', "-"));
    assert!(Path::new(l["status"]["path"].as_str().unwrap())
        .join("small")
        .exists());
    aosd.ok(&["delete", "item", "small", "big", "--wait"]);
    // Dropping aosd unmounts the layers and then the tmpfs.
    drop(aosd);
    assert!(!aos_e2e::mounts_under(&tmpfs).iter().any(|m| m == &tmpfs));
}

#[test]
fn a_layer_that_fits_with_its_image_is_admitted_on_a_small_disk() {
    // Blob and image of a 19.5 MB layer blob (39 MB at the peak) fit on 48 MiB with 4 kept free; the
    // old rule (2.5 times the blob) asked for 47.5 MiB and refused it.
    let dir = tempfile::tempdir().unwrap();
    let built = ImageBuilder::new()
        .layer(&[Entry::File("data".into(), noise(18_500_000), 0o644)])
        .write_layout(&dir.path().join("l"), "1");
    let (aosd, tmpfs) = on_a_small_disk(48);
    apply(
        &aosd,
        &item_yaml(
            "fits",
            "f",
            "1",
            &format!("archive: {}", built.layout.display()),
        ),
    );
    let item = aosd.until("item", "fits", 60, |v| {
        matches!(v["status"]["phase"].as_str(), Some("Ready" | "Failed"))
    });
    assert_eq!(item["status"]["phase"], "Ready", "{item:#}");
    aosd.ok(&["delete", "item", "fits", "--wait"]);
    drop(aosd);
    assert!(!aos_e2e::mounts_under(&tmpfs).iter().any(|m| m == &tmpfs));
}

#[test]
fn cached_versions_beyond_the_limit_and_orphan_files_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (v1, s1) = archive_item(dir.path(), "v1", "one");
    let (v2, s2) = archive_item(dir.path(), "v2", "two");
    let (v3, s3) = archive_item(dir.path(), "v3", "three");
    let mut aosd = start_with("[images]\nversions_per_item = 2\n");
    for (name, v, s) in [("app-1", "1", &s1), ("app-2", "2", &s2)] {
        apply(&aosd, &item_yaml(name, "app", v, s));
        aosd.ok(&[
            "wait",
            &format!("item/{name}"),
            "--for=condition=Ready",
            "--timeout=30s",
        ]);
    }
    aosd.ok(&["delete", "item", "app-1", "app-2", "--wait"]);
    // Both removed versions stay cached (TTL 30 days) ...
    let layer = |b: &aos_testkit::BuiltImage| b.layers[0].0.replace(':', "-");
    assert!(aosd.run(&["get", "layer", &layer(&v1)]).status.success());
    assert!(aosd.run(&["get", "layer", &layer(&v2)]).status.success());
    // ... until a third version arrives: then the oldest removed one goes.
    apply(&aosd, &item_yaml("app-3", "app", "3", &s3));
    aosd.ok(&[
        "wait",
        "item/app-3",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    let start = std::time::Instant::now();
    while aosd.run(&["get", "layer", &layer(&v1)]).status.success() {
        assert!(start.elapsed().as_secs() < 20, "version 1 was not dropped");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        aosd.run(&["get", "layer", &layer(&v2)]).status.success(),
        "version 2 is kept"
    );
    // Files nothing refers to are collected at start.
    let stray = images_dir(&aosd).join(format!("blobs/sha256/{}", "ab".repeat(32)));
    std::fs::write(&stray, b"stray").unwrap();
    aosd.restart();
    let start = std::time::Instant::now();
    while stray.exists() {
        assert!(
            start.elapsed().as_secs() < 20,
            "the stray blob was not collected"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let v3_image = images_dir(&aosd).join(format!("layers/sha256/{}.sqfs", &v3.layers[0].1[7..]));
    assert!(v3_image.exists(), "what is in use stays");
    aosd.ok(&["delete", "item", "app-3", "--wait"]);
}

#[test]
fn an_item_pointed_at_another_image_lets_go_of_its_old_layers() {
    let dir = tempfile::tempdir().unwrap();
    let (a, sa) = archive_item(dir.path(), "a", "first");
    let (b, sb) = archive_item(dir.path(), "b", "second");
    let aosd = start_with("");
    apply(&aosd, &item_yaml("app", "app", "1", &sa));
    aosd.ok(&["wait", "item/app", "--for=condition=Ready", "--timeout=30s"]);
    apply(&aosd, &item_yaml("app", "app", "1", &sb));
    let item = aosd.until("item", "app", 30, |v| {
        v["status"]["phase"] == "Ready" && v["status"]["resolvedGeneration"] == 2
    });
    assert_eq!(item["status"]["layers"][0], b.layers[0].0.replace(':', "-"));
    let old = aosd.json("layer", &a.layers[0].0.replace(':', "-"));
    assert!(old["metadata"].get("ownerReferences").is_none(), "{old:#}");
    assert_eq!(
        old["metadata"]["annotations"]["aos.edge/removed-item"],
        "app:1"
    );
    aosd.ok(&["delete", "item", "app", "--wait"]);
}

#[test]
fn deleting_items_trims_cached_versions_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let built: Vec<_> = ["1", "2", "3"]
        .iter()
        .map(|v| archive_item(dir.path(), &format!("v{v}"), &format!("content {v}")))
        .collect();
    let aosd = start_with("[images]\nversions_per_item = 2\n");
    // Three live versions: more than the limit, but live ones are never dropped.
    for (i, (_, s)) in built.iter().enumerate() {
        let v = (i + 1).to_string();
        apply(&aosd, &item_yaml(&format!("app-{v}"), "app", &v, s));
        aosd.ok(&[
            "wait",
            &format!("item/app-{v}"),
            "--for=condition=Ready",
            "--timeout=30s",
        ]);
    }
    aosd.ok(&["delete", "item", "app-1", "app-2", "app-3", "--wait"]);
    let layer = |b: &aos_testkit::BuiltImage| b.layers[0].0.replace(':', "-");
    let start = std::time::Instant::now();
    while aosd
        .run(&["get", "layer", &layer(&built[0].0)])
        .status
        .success()
    {
        assert!(
            start.elapsed().as_secs() < 20,
            "the oldest cached version was kept\n{}",
            aosd.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for (b, _) in &built[1..] {
        assert!(aosd.run(&["get", "layer", &layer(b)]).status.success());
    }
}
