//! The pipeline against a real registry, an HTTP server that misbehaves, and local archives:
//! the multi-layer fixture seen through overlayfs equals `umoci unpack`; resume, corruption,
//! hostile layers and wrong diff ids are handled as they must be.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use aos_image::download::RetryPolicy;
use aos_image::layerstore::{self, LayerStore};
use aos_image::pipeline::{install_service_layer, resolve};
use aos_image::source::{self, BlobSource, SourceConfig, SourceSpec};
use aos_image::stack::{self, StackLayer};
use aos_image::ImageError;
use aos_testkit::image::{file, Entry};
use aos_testkit::{Faults, HttpServer, ImageBuilder, Registry};

fn fixture() -> ImageBuilder {
    ImageBuilder::new()
        .layer(&[
            Entry::Dir("etc", 0o755),
            file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
            file("etc/config", b"old config"),
            Entry::Dir("usr/bin", 0o755),
            Entry::File(
                "usr/bin/tool".into(),
                b"#!/bin/sh\necho tool\n".to_vec(),
                0o755,
            ),
            Entry::Symlink("usr/bin/link", "tool"),
            Entry::Hardlink("usr/bin/tool2", "usr/bin/tool"),
            Entry::Dir("var/lib/old", 0o750),
            file("var/lib/old/a", b"a"),
            file("var/lib/old/b", b"b"),
            Entry::Dir("data", 0o700),
            file("data/keep", b"v1"),
            Entry::Owned {
                path: "home/user/notes".into(),
                data: b"mine".to_vec(),
                mode: 0o600,
                uid: 1000,
                gid: 1000,
                xattr: Some(("user.note".into(), b"hello".to_vec())),
            },
        ])
        .layer(&[
            Entry::Whiteout("etc/config"),
            Entry::Opaque("var/lib/old"),
            file("var/lib/old/c", b"c"),
            file("etc/new", b"new"),
            file("data/keep", b"v2"),
        ])
        .layer(&[
            Entry::Whiteout("data"),
            file("data2/x", b"x"),
            Entry::Symlink("etc/abs", "/etc/passwd"),
            file("a/b/c/d/deep", b"deep"),
        ])
}

struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = layerstore::unmount(m);
        }
    }
}

fn retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        first_wait: std::time::Duration::from_millis(50),
        max_wait: std::time::Duration::from_millis(200),
    }
}

async fn install_all(store: &LayerStore, src: &dyn BlobSource) -> Result<Vec<PathBuf>, ImageError> {
    Ok(install_stack(store, src)
        .await?
        .into_iter()
        .map(|l| l.root)
        .collect())
}

/// Whether each layer's conversion followed its download (see `aos_image::follow`).
async fn followed(store: &LayerStore, src: &dyn BlobSource) -> Vec<bool> {
    let r = resolve(src, "linux", "x86_64", None).await.unwrap();
    let mut out = Vec::new();
    for l in r.layers_wanted() {
        let (rec, t) =
            install_service_layer(store, src, &l, &retry(), &Default::default(), &|_| {})
                .await
                .unwrap();
        out.push(t.unwrap().followed);
        store.remove_layer(&rec.diff_id).unwrap();
    }
    out
}

async fn install_stack(
    store: &LayerStore,
    src: &dyn BlobSource,
) -> Result<Vec<StackLayer>, ImageError> {
    let r = resolve(src, "linux", "x86_64", None).await?;
    let mut layers = Vec::new();
    for l in r.layers_wanted() {
        let rec = install_service_layer(store, src, &l, &retry(), &Default::default(), &|_| {})
            .await?
            .0;
        layers.push(StackLayer {
            root: store.mount(&rec.diff_id)?,
            implicit_dirs: rec.implicit_dirs.iter().cloned().collect(),
        });
    }
    Ok(layers)
}

fn overlay(lowers_bottom_first: &[PathBuf], target: &Path) {
    std::fs::create_dir_all(target).unwrap();
    let lower: Vec<String> = lowers_bottom_first
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let st = Command::new("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("lowerdir={}", lower.join(":")),
        ])
        .arg(target)
        .status()
        .unwrap();
    assert!(st.success(), "overlay mount failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overlay_of_the_layers_equals_what_umoci_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let built = fixture().write_layout(&dir.path().join("layout"), "v1");
    let registry = Registry::start();
    let reference = registry.push(&built.layout, "v1", "aos/fixture");
    let config = SourceConfig {
        insecure_registries: vec![registry.host()],
        ..Default::default()
    };
    let src = source::open(&SourceSpec::Registry(reference), &config)
        .await
        .unwrap();
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let mut mounts = Mounts(Vec::new());
    let layers = install_stack(&store, &*src).await.unwrap();
    let mut dirs: Vec<PathBuf> = layers.iter().map(|l| l.root.clone()).collect();
    mounts.0.extend(dirs.iter().cloned());
    // Directories a layer holds only implicitly take their attributes from below.
    let fixes = stack::fixups(&layers);
    assert!(
        fixes
            .iter()
            .any(|f| f.path == "var/lib/old" && f.mode == 0o750),
        "{fixes:?}"
    );
    let fix_dir = dir.path().join("fixups");
    stack::write_fixups(&fix_dir, &fixes).unwrap();
    dirs.push(fix_dir);
    let merged = dir.path().join("merged");
    overlay(&dirs, &merged);
    mounts.0.push(merged.clone());

    let bundle = dir.path().join("bundle");
    let out = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", built.layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours = aos_testkit::tree::snapshot(&merged);
    let theirs = aos_testkit::tree::snapshot(&bundle.join("rootfs"));
    let diff = aos_testkit::tree::diff(&ours, &theirs);
    assert!(diff.is_empty(), "the trees differ:\n{}", diff.join("\n"));
    // And the deleted files are really gone.
    for gone in ["etc/config", "var/lib/old/a", "data/keep", "data"] {
        assert!(!merged.join(gone).exists(), "{gone} should be deleted");
    }
    assert_eq!(std::fs::read(merged.join("var/lib/old/c")).unwrap(), b"c");
    assert!(ours["home/user/notes"].xattrs.contains_key("user.note"));
    assert_eq!(ours["home/user/notes"].uid, 1000);
    drop(mounts);
    // The compressed blobs are gone once converted; records and images stay.
    assert!(
        store.blobs_on_disk().is_empty(),
        "{:?}",
        store.blobs_on_disk()
    );
    assert_eq!(store.layers_on_disk().len(), 3);
    for (_, diff_id, _) in &built.layers {
        assert!(store.verify_at_rest(diff_id).unwrap());
        store.remove_layer(diff_id).unwrap();
    }
}

async fn http_source(server: &HttpServer) -> Arc<dyn BlobSource> {
    source::open(
        &SourceSpec::Http(format!("{}/layout", server.url())),
        &SourceConfig::default(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_resumes_with_a_range_request() {
    let dir = tempfile::tempdir().unwrap();
    let big: Vec<u8> = (0..3_000_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let built = ImageBuilder::new()
        .layer(&[Entry::File("big".into(), big, 0o644)])
        .write_layout(&dir.path().join("layout"), "v1");
    let size = built.layers[0].2;
    let server = HttpServer::serve(
        dir.path(),
        Faults {
            drop_after: Some(size / 3),
            drop_times: 1,
            ..Default::default()
        },
    );
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let src = http_source(&server).await;
    assert_eq!(
        followed(&store, &*src).await,
        [true],
        "converted while it downloads, across the resume"
    );
    let blob_requests: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|(p, _)| p.contains(&built.layers[0].0[7..]))
        .collect();
    assert_eq!(blob_requests.len(), 2, "{blob_requests:?}");
    assert_eq!(
        blob_requests[1].1,
        Some(size / 3),
        "the second request resumes where the first stopped"
    );
    let blob_bytes = server.sent();
    assert!(
        blob_bytes < size + size / 10 + 8192,
        "sent {blob_bytes} for a blob of {size}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_ranges_still_gives_a_complete_blob() {
    let dir = tempfile::tempdir().unwrap();
    let built = ImageBuilder::new()
        .layer(&[Entry::File("f".into(), vec![7u8; 500_000], 0o644)])
        .write_layout(&dir.path().join("layout"), "v1");
    let size = built.layers[0].2;
    let server = HttpServer::serve(
        dir.path(),
        Faults {
            drop_after: Some(size / 2),
            drop_times: 1,
            ignore_range: true,
            ..Default::default()
        },
    );
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    // The download starts over: what the converter read no longer holds, so the verified
    // blob is converted again.
    assert_eq!(
        followed(&store, &*http_source(&server).await).await,
        [false]
    );
    let dirs = install_all(&store, &*http_source(&server).await)
        .await
        .unwrap();
    let _m = Mounts(dirs);
}

/// Installs a one-layer image of `size` bytes from a server with `faults` on the layer blob.
async fn install_through_faults(
    size: usize,
    faults: Faults,
) -> (
    tempfile::TempDir,
    LayerStore,
    Result<Vec<PathBuf>, ImageError>,
) {
    let dir = tempfile::tempdir().unwrap();
    let built = ImageBuilder::new()
        .layer(&[Entry::File("f".into(), vec![1u8; size], 0o644)])
        .write_layout(&dir.path().join("layout"), "v1");
    let only = Some(built.layers[0].0.trim_start_matches("sha256:").to_string());
    let server = HttpServer::serve(dir.path(), Faults { only, ..faults });
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let result = install_all(&store, &*http_source(&server).await).await;
    (dir, store, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_bytes_fail_the_digest_and_leave_nothing() {
    let faults = Faults {
        corrupt: true,
        ..Default::default()
    };
    let (_dir, store, result) = install_through_faults(300_000, faults).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(
        store.blobs_on_disk().is_empty(),
        "no partial or blob is kept"
    );
    assert!(store.layers_on_disk().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_larger_than_its_descriptor_is_refused() {
    let faults = Faults {
        oversize: true,
        ..Default::default()
    };
    let (_dir, store, result) = install_through_faults(1000, faults).await;
    let err = result.unwrap_err();
    assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
    assert!(store.blobs_on_disk().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_layers_are_refused_with_a_reason_and_nothing_is_published() {
    let cases: Vec<(&str, Vec<Entry>)> = vec![
        ("absolute path", vec![Entry::RawFile("/etc/evil")]),
        ("dot dot", vec![Entry::RawFile("../evil")]),
        (
            "through a symlink",
            vec![Entry::Symlink("lib", "/etc"), file("lib/evil", b"x")],
        ),
        (
            "hard link outside",
            vec![Entry::Hardlink("shadow", "/etc/shadow")],
        ),
        ("device node", vec![Entry::Device("dev/sda")]),
    ];
    for (name, entries) in cases {
        let dir = tempfile::tempdir().unwrap();
        let built = ImageBuilder::new()
            .layer(&entries)
            .write_layout(&dir.path().join("layout"), "v1");
        let store = LayerStore::open(dir.path().join("images")).unwrap();
        let src = source::open(
            &SourceSpec::Archive(built.layout.clone()),
            &SourceConfig::default(),
        )
        .await
        .unwrap();
        let err = install_all(&store, &*src).await.unwrap_err();
        assert!(matches!(err, ImageError::HostileLayer(_)), "{name}: {err}");
        assert!(
            store.layers_on_disk().is_empty(),
            "{name}: something was published"
        );
        assert!(
            store.blobs_on_disk().is_empty(),
            "{name}: the blob was kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_diff_id_is_caught_after_decompression() {
    let dir = tempfile::tempdir().unwrap();
    let built = ImageBuilder::new()
        .layer(&[file("f", b"data")])
        .corrupt_diff_id()
        .write_layout(&dir.path().join("layout"), "v1");
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let src = source::open(
        &SourceSpec::Archive(built.layout.clone()),
        &SourceConfig::default(),
    )
    .await
    .unwrap();
    let err = install_all(&store, &*src).await.unwrap_err();
    assert!(
        matches!(err, ImageError::DigestMismatch { ref what, .. } if what.contains("uncompressed")),
        "{err}"
    );
    assert!(store.layers_on_disk().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_read_in_place_and_manifests_that_do_not_parse_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let built = fixture().write_layout(&dir.path().join("layout"), "v1");
    let tar = dir.path().join("image.tar");
    aos_testkit::image::archive(&built.layout, &tar);
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let src = source::open(&SourceSpec::Archive(tar), &SourceConfig::default())
        .await
        .unwrap();
    let r = resolve(&*src, "linux", "x86_64", None).await.unwrap();
    assert_eq!(r.manifest_digest, built.manifest_digest);
    assert_eq!(r.manifest.layers.len(), 3);
    let err = resolve(
        &*src,
        "linux",
        "x86_64",
        Some("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("index.json"), b"{not json").unwrap();
    let src = source::open(&SourceSpec::Archive(bad), &SourceConfig::default())
        .await
        .unwrap();
    assert!(matches!(
        resolve(&*src, "linux", "x86_64", None).await,
        Err(ImageError::InvalidManifest(_))
    ));
    drop(store);
}

#[test]
fn a_document_torn_by_a_power_cut_is_not_read_and_is_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = LayerStore::open(dir.path().join("images")).unwrap();
    let doc = br#"{"schemaVersion":2}"#;
    let digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(doc))
    );
    store.put_meta(&digest, doc).unwrap();
    assert_eq!(store.meta(&digest).as_deref(), Some(&doc[..]));
    // What a cut between the rename and the data reaching the disk leaves: a name, no bytes.
    let path = dir
        .path()
        .join("images/meta/sha256")
        .join(digest.trim_start_matches("sha256:"));
    std::fs::write(&path, b"").unwrap();
    assert_eq!(
        store.meta(&digest),
        None,
        "a torn document is not a document"
    );
    store.put_meta(&digest, doc).unwrap();
    assert_eq!(store.meta(&digest).as_deref(), Some(&doc[..]));
}
