//! The image pipeline through aosd and aosctl: items from a real registry and from a local
//! archive become Ready with mounted layers; a kill in the middle of a download resumes with
//! a range; hostile and corrupt images fail with their reason; a full disk fails NotEnoughSpace;
//! deleting everything leaves no mount and no file behind.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aos_e2e::images::*;
use aos_e2e::mounts_under;
use aos_testkit::image::{file, Entry};
use aos_testkit::{Faults, HttpServer, ImageBuilder, Registry};

#[test]
fn an_item_from_the_registry_becomes_ready_and_leaves_nothing_when_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let built = ImageBuilder::new()
        .layer(&[Entry::Dir("etc", 0o755), file("etc/hello", b"hello")])
        .layer(&[
            file("usr/bin/app", b"#!/bin/sh\necho app\n"),
            Entry::Whiteout("etc/hello"),
        ])
        .item_config(serde_json::json!({"quotas": {"ramLimit": 1048576}}))
        .write_layout(&dir.path().join("layout"), "1.0.0");
    let reference = registry.push(&built.layout, "1.0.0", "aos/hello");
    let aosd = start_with(&format!(
        "[images]\ninsecure_registries = [\"{}\"]\nremoved_ttl = \"1s\"\n",
        registry.host()
    ));
    apply(
        &aosd,
        &item_yaml(
            "hello-1",
            "hello",
            "1.0.0",
            &format!("registry: {reference}"),
        ),
    );
    let item = aosd.until("item", "hello-1", 60, |v| v["status"]["phase"] == "Ready");
    assert_eq!(item["status"]["phase"], "Ready");
    assert_eq!(
        item["status"]["manifestDigest"],
        built.manifest_digest.as_str()
    );
    assert_eq!(
        item["status"]["config"]["item"]["quotas"]["ramLimit"],
        1048576
    );
    let p = &item["status"]["progress"];
    assert_eq!(p["doneBytes"], p["totalBytes"]);
    let layers = aosd.ok(&["get", "layers"]);
    assert_eq!(
        layers.lines().filter(|l| l.contains("Ready")).count(),
        2,
        "{layers}"
    );
    let layer = aosd.json("layer", &built.layers[1].0.replace(':', "-"));
    let mounted = layer["status"]["path"].as_str().unwrap().to_string();
    assert!(Path::new(&mounted).join("usr/bin/app").exists());
    assert_eq!(mounts_under(aosd.path()).len(), 2);

    // A second item sharing a layer fetches nothing new and owns it too.
    apply(
        &aosd,
        &item_yaml(
            "hello-1b",
            "hello",
            "1.0.0",
            &format!("registry: {reference}"),
        ),
    );
    aosd.ok(&[
        "wait",
        "item/hello-1b",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    let owners = aosd.json("layer", &built.layers[0].0.replace(':', "-"))["metadata"]
        ["ownerReferences"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(owners, 2);

    aosd.ok(&["delete", "item", "hello-1", "hello-1b", "--wait"]);
    // Orphaned layers are cached for the TTL (1 s here), then removed with their files.
    let start = std::time::Instant::now();
    while !aosd.ok(&["get", "layers", "-o", "name"]).trim().is_empty() {
        assert!(start.elapsed().as_secs() < 30, "layers were not collected");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        mounts_under(aosd.path()).is_empty(),
        "a layer stayed mounted"
    );
    assert_eq!(files_in(&images_dir(&aosd).join("layers/sha256")), 0);
    assert_eq!(files_in(&images_dir(&aosd).join("blobs/sha256")), 0);
}

#[test]
fn a_download_killed_with_aosd_resumes_from_the_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    // Incompressible data, so that the blob is big.
    let mut x: u64 = 0x1234_5678;
    let data: Vec<u8> = (0..8_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let built = ImageBuilder::new()
        .layer(&[Entry::File("big".into(), data, 0o644)])
        .write_layout(&dir.path().join("layout"), "1");
    let (digest, _, size) = built.layers[0].clone();
    let server = HttpServer::serve(
        dir.path(),
        Faults {
            throttle: Some(4_000_000),
            only: Some(digest[7..].to_string()),
            ..Default::default()
        },
    );
    let mut aosd = start_with("");
    apply(
        &aosd,
        &item_yaml("big", "big", "1", &format!("http: {}/layout", server.url())),
    );
    let lname = digest.replace(':', "-");
    let l = aosd.until("layer", &lname, 30, |v| {
        v["status"]["downloadedBytes"].as_u64().unwrap_or(0) > size / 4
    });
    let had = l["status"]["downloadedBytes"].as_u64().unwrap();
    // SIGKILL, no chance to clean up.
    aosd.child.kill().unwrap();
    aosd.child.wait().unwrap();
    let partial = images_dir(&aosd).join(format!("blobs/sha256/{}.partial", &digest[7..]));
    let kept = std::fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
    // Progress counts bytes still in the write buffer (at most 1 MiB) too.
    assert!(
        kept > 0 && kept + (1 << 20) >= had,
        "the partial file ({kept}) holds what was reported ({had})"
    );
    server.set_faults(Faults::default());
    aosd.restart();
    aosd.ok(&["wait", "item/big", "--for=condition=Ready", "--timeout=60s"]);
    let ranges: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(p, _)| p.contains(&digest[7..]))
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(
        ranges[1].1,
        Some(kept),
        "the restart asked only for the missing bytes"
    );
    // Bytes in flight when aosd was killed (socket buffers, more on a loaded machine) are
    // lost; a download started over would send the blob twice.
    let sent = server.sent();
    assert!(
        sent < size + size / 4 + 65536,
        "sent {sent} bytes for a blob of {size}"
    );
    aosd.ok(&["delete", "item", "big", "--wait"]);
}

#[test]
fn hostile_and_corrupt_images_fail_with_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let hostile = ImageBuilder::new()
        .layer(&[Entry::Symlink("lib", "/etc"), file("lib/evil", b"x")])
        .write_layout(&dir.path().join("hostile"), "1");
    let tar = dir.path().join("hostile.tar");
    aos_testkit::image::archive(&hostile.layout, &tar);
    let corrupt = ImageBuilder::new()
        .layer(&[file("f", &[3u8; 100_000])])
        .write_layout(&dir.path().join("corrupt"), "1");
    let server = HttpServer::serve(
        dir.path(),
        Faults {
            corrupt: true,
            only: Some(corrupt.layers[0].0[7..].to_string()),
            ..Default::default()
        },
    );
    let aosd = start_with("[images]\nretry_wait = \"10ms\"\n");
    apply(
        &aosd,
        &item_yaml("hostile", "h", "1", &format!("archive: {}", tar.display())),
    );
    apply(
        &aosd,
        &item_yaml(
            "corrupt",
            "c",
            "1",
            &format!("http: {}/corrupt", server.url()),
        ),
    );
    let h = aosd.until("item", "hostile", 30, |v| v["status"]["phase"] == "Failed");
    let c = aosd.until("item", "corrupt", 30, |v| v["status"]["phase"] == "Failed");
    let reason = |v: &serde_json::Value| {
        v["status"]["conditions"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(reason(&h), "HostileLayer", "{h:#}");
    assert!(
        h["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("symlink"),
        "{h:#}"
    );
    assert_eq!(reason(&c), "DigestMismatch", "{c:#}");
    // apply --wait reports the failure and exits non-zero.
    let again = aosd.path().join("hostile.yaml");
    std::fs::write(
        &again,
        item_yaml("hostile", "h", "1", &format!("archive: {}", tar.display())),
    )
    .unwrap();
    let out = aosd.run(&[
        "apply",
        "--wait",
        "--timeout=20s",
        "-f",
        again.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("item/hostile failed: HostileLayer"), "{err}");
    assert!(mounts_under(aosd.path()).is_empty());
    assert_eq!(
        files_in(&images_dir(&aosd).join("layers/sha256")),
        0,
        "nothing was published"
    );
}

#[test]
fn a_tampered_layer_is_found_by_the_integrity_pass_and_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let (built, source) = archive_item(dir.path(), "a", "intact");
    let aosd = start_with("[images]\nintegrity_interval = \"1s\"\n");
    apply(&aosd, &item_yaml("a", "a", "1", &source));
    aosd.ok(&["wait", "item/a", "--for=condition=Ready", "--timeout=30s"]);
    let lname = built.layers[0].0.replace(':', "-");
    let first = aosd.json("layer", &lname)["status"]["verifiedAt"].clone();
    let image = images_dir(&aosd).join(format!("layers/sha256/{}.sqfs", &built.layers[0].1[7..]));
    let mut bytes = std::fs::read(&image).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 0xff;
    std::fs::write(&image, &bytes).unwrap();
    // The next pass notices, throws the layer away, fetches it again and checks it once more.
    let l = aosd.until("layer", &lname, 30, |v| {
        v["status"]["phase"] == "Ready"
            && v["status"]["verifiedAt"] != first
            && std::fs::read(&image)
                .map(|b| b[n - 100] != bytes[n - 100])
                .unwrap_or(false)
    });
    assert!(
        aosd.log()
            .contains("stored layer does not match its digest"),
        "{l:#}"
    );
    aosd.ok(&["delete", "item", "a", "--wait"]);
}

#[test]
fn a_layer_writing_through_a_lower_layers_symlink_fails_the_item() {
    let dir = tempfile::tempdir().unwrap();
    // Each layer alone is fine; the second writes through the first one's symlink.
    let stacked = ImageBuilder::new()
        .layer(&[Entry::Symlink("lnk", "/tmp")])
        .layer(&[Entry::Dir("lnk", 0o755), file("lnk/sub/x", b"x")])
        .write_layout(&dir.path().join("stacked"), "1");
    let through = ImageBuilder::new()
        .layer(&[Entry::Symlink("lnk", "/tmp")])
        .layer(&[file("lnk/sub/x", b"x")])
        .write_layout(&dir.path().join("through"), "1");
    let aosd = start_with("");
    apply(
        &aosd,
        &item_yaml(
            "through",
            "t",
            "1",
            &format!("archive: {}", through.layout.display()),
        ),
    );
    apply(
        &aosd,
        &item_yaml(
            "stacked",
            "s",
            "1",
            &format!("archive: {}", stacked.layout.display()),
        ),
    );
    let t = aosd.until("item", "through", 30, |v| v["status"]["phase"] == "Failed");
    assert_eq!(
        t["status"]["conditions"][0]["reason"], "HostileLayer",
        "{t:#}"
    );
    assert!(
        t["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("layer 2 writes under \"lnk\""),
        "{t:#}"
    );
    // A layer that replaces the symlink with a directory of its own is fine.
    aosd.until("item", "stacked", 30, |v| v["status"]["phase"] == "Ready");
    aosd.ok(&["delete", "item", "through", "stacked", "--wait"]);
}
