//! What a device meets: records damaged on flash or rewritten by hand, a wiped or foreign file,
//! a second opener, objects too large, and a disk that fills up under the store and frees again.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use aos_api::{DynObject, ObjectMeta, Selector, API_VERSION};
use aos_store::{Backend, Embedded, EmbeddedOptions, StoreError};
use redb::{ReadableDatabase, TableDefinition};

const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");

fn obj(name: &str, pad: usize) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: "Instance".into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        spec: serde_json::json!({"pad": "x".repeat(pad)}),
        status: serde_json::Value::Null,
    }
}

/// Rewrites the raw record under `key` with `f` (the store must be closed).
fn tamper(path: &Path, key: &str, f: impl Fn(&mut Vec<u8>)) {
    let db = redb::Database::create(path).unwrap();
    let mut bytes = {
        let r = db.begin_read().unwrap();
        let t = r.open_table(OBJECTS).unwrap();
        t.get(key).unwrap().unwrap().value().to_vec()
    };
    f(&mut bytes);
    let w = db.begin_write().unwrap();
    w.open_table(OBJECTS)
        .unwrap()
        .insert(key, bytes.as_slice())
        .unwrap();
    w.commit().unwrap();
}

#[tokio::test]
async fn damaged_records_are_quarantined_at_open_and_the_rest_of_the_kind_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
        for n in ["pa", "pb", "pc"] {
            s.apply(obj(n, 10), false).await.unwrap();
        }
    }
    // Bit rot in one record; another rewritten to valid JSON naming another object.
    tamper(&path, "Instance/pb", |b| {
        let n = b.len();
        b[n - 5] ^= 0x20;
    });
    tamper(&path, "Instance/pa", |b| {
        let json = String::from_utf8_lossy(&b[9..]).replace("\"pa\"", "\"zz\"");
        // A valid record of the other name, checksum and all, under the old key.
        let mut sealed = vec![1u8];
        use sha2::Digest;
        sealed.extend_from_slice(&sha2::Sha256::digest(json.as_bytes())[..8]);
        sealed.extend_from_slice(json.as_bytes());
        *b = sealed;
    });
    let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
    let listed = s.list("Instance", &Selector::everything()).await.unwrap();
    let names: Vec<&str> = listed.items.iter().map(|o| o.name()).collect();
    assert_eq!(names, ["pc"], "only the intact object is there");
    let health = s.health();
    assert!(!health.is_ok());
    let keys: Vec<&str> = health.damaged.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(keys, ["Instance/pa", "Instance/pb"]);
    assert!(
        health.damaged[0].reason.contains("Instance/zz"),
        "{health:?}"
    );
    assert!(health.damaged[1].reason.contains("checksum"), "{health:?}");
    assert!(health.summary().contains("2 damaged object(s) quarantined"));
    assert_eq!(s.report().quarantined.len(), 2);
    // The quarantine is remembered across opens.
    drop(s);
    let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
    assert_eq!(s.health().damaged.len(), 2);
    assert!(!s.report().created);
}

#[tokio::test]
async fn a_wiped_file_opens_as_a_new_store_and_foreign_or_locked_files_say_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    std::fs::write(&path, b"").unwrap();
    let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
    assert!(s.report().created, "a zero-length file is a new store");
    let second = Embedded::open(EmbeddedOptions::file(&path)).err().unwrap();
    assert!(
        second.to_string().contains("in use by another process"),
        "{second}"
    );
    drop(s);
    let foreign = dir.path().join("foreign.redb");
    std::fs::write(&foreign, vec![0x42u8; 8192]).unwrap();
    let e = Embedded::open(EmbeddedOptions::file(&foreign))
        .err()
        .unwrap();
    assert!(!e.to_string().contains("another"), "{e}");
    assert!(e.to_string().contains("foreign.redb"), "{e}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the store is root's only");
}

#[tokio::test]
async fn an_object_over_the_size_limit_is_refused_and_the_event_log_keeps_to_its_bytes() {
    let s = Embedded::open(EmbeddedOptions {
        max_object_bytes: 64 << 10,
        event_log_bytes: 1 << 20,
        ..EmbeddedOptions::in_memory()
    })
    .unwrap();
    let e = s.apply(obj("big", 100 << 10), false).await.unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{e}");
    assert!(e.to_string().contains("at most 65536 bytes"), "{e}");
    // 40 KiB objects, 100 writes: 4 MB of events, a 1 MiB log.
    for i in 0..100 {
        let mut o = obj(&format!("o{}", i % 3), 40 << 10);
        o.spec["i"] = i.into();
        s.apply(o, false).await.unwrap();
    }
    let rev = s.revision().await.unwrap();
    let mut w = s.watch(Some("Instance"), Some(rev - 70));
    let first = futures::StreamExt::next(&mut w).await.unwrap();
    assert!(
        matches!(first, Err(StoreError::Gone { .. })),
        "70 events of 40 KiB do not fit in 1 MiB"
    );
    let mut w = s.watch(Some("Instance"), Some(rev - 10));
    assert!(futures::StreamExt::next(&mut w).await.unwrap().is_ok());
}

fn mount_tmpfs(dir: &Path, size: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .unwrap()
        .success();
    assert!(ok, "mounting a tmpfs needs root");
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0).status();
    }
}

/// Fills the filesystem of `dir` with one file named `name`; returns it.
fn fill(dir: &Path, name: &str) -> std::path::PathBuf {
    use std::io::Write;
    let f = dir.join(name);
    let mut file = std::fs::File::create(&f).unwrap();
    let chunk = vec![7u8; 64 << 10];
    while file.write_all(&chunk).is_ok() {}
    let _ = file.flush();
    f
}

#[tokio::test]
async fn a_full_disk_fails_writes_then_the_reserve_and_freed_space_bring_the_store_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = dir.path().join("fs");
    mount_tmpfs(&fs, "24m");
    let _unmount = Unmount(&fs);
    let s = Embedded::open(EmbeddedOptions {
        reserve_bytes: 4 << 20,
        ..EmbeddedOptions::file(fs.join("s.redb"))
    })
    .unwrap();
    assert!(
        fs.join("s.redb.reserve").exists(),
        "the reserve is set aside"
    );
    s.apply(obj("before", 10), false).await.unwrap();
    let filler = fill(&fs, "filler");
    // Writes go on while the disk is full: the first failure gives the reserve back.
    let mut ok = 0;
    let mut failed = 0;
    for i in 0..200 {
        match s.apply(obj(&format!("w{i}"), 2000), false).await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e}");
                failed += 1;
            }
        }
    }
    eprintln!("with the disk full: {ok} writes ok, {failed} failed");
    assert!(
        ok > 100,
        "the reserve carried the writes: {ok} ok, {failed} failed"
    );
    // Fill what the reserve gave back too: now writes fail, and health says why.
    let more = fill(&fs, "more");
    let mut saw_failure = false;
    for i in 0..2000 {
        if s.apply(obj(&format!("x{i}"), 4000), false).await.is_err() {
            saw_failure = true;
            break;
        }
    }
    assert!(saw_failure, "a full disk must fail a write");
    // Freed space brings it back by itself.
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(&more).unwrap();
    let start = std::time::Instant::now();
    loop {
        if s.apply(obj("after", 10), false).await.is_ok() {
            break;
        }
        assert!(
            start.elapsed().as_secs() < 15,
            "the store did not come back: {:?}",
            s.health()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(s.health().failure.is_none(), "{:?}", s.health());
    assert!(s.get("Instance", "before").await.is_ok());
    assert!(s.get("Instance", "after").await.is_ok());
}
