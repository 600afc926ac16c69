//! What survives: a reopened file keeps every object, the revision and the event log; a writer
//! killed with SIGKILL in the middle of writes leaves a file that opens and holds every write
//! it acknowledged.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use aos_api::{DynObject, ObjectMeta, Selector, API_VERSION};
use aos_store::{Backend, Embedded, EmbeddedOptions};
use futures::StreamExt;

fn obj(name: &str, i: u64) -> DynObject {
    DynObject {
        api_version: API_VERSION.into(),
        kind: "Item".into(),
        metadata: ObjectMeta {
            name: name.into(),
            ..Default::default()
        },
        spec: serde_json::json!({"i": i, "pad": "x".repeat(200)}),
        status: serde_json::Value::Null,
    }
}

#[tokio::test]
async fn a_reopened_file_has_objects_revision_and_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let rev = {
        let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
        for i in 0..10 {
            s.apply(obj(&format!("o{i}"), i), false).await.unwrap();
        }
        s.delete("Item", "o3", None, false).await.unwrap();
        s.revision().await.unwrap()
    };
    let s = Embedded::open(EmbeddedOptions::file(&path)).unwrap();
    assert_eq!(s.revision().await.unwrap(), rev);
    assert_eq!(
        s.list("Item", &Selector::everything())
            .await
            .unwrap()
            .items
            .len(),
        9
    );
    let mut w = s.watch(Some("Item"), Some(rev - 2));
    let e = w.next().await.unwrap().unwrap();
    assert_eq!(e.revision, rev - 1);
    let next = s.apply(obj("new", 0), false).await.unwrap();
    assert_eq!(next.object.metadata.resource_version, rev + 1);
}

const CHILD_ENV: &str = "AOS_STORE_CRASH_CHILD";

/// The writer process the crash test starts (this same test binary, re-run with `CHILD_ENV`)
/// and kills: writes forever from four tasks, printing `ack N` after each acknowledged write.
fn crash_child_writer(path: std::ffi::OsString) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child_writes(path));
}

async fn child_writes(path: std::ffi::OsString) {
    let s = Embedded::open(EmbeddedOptions::file(path)).unwrap();
    let start: u64 = std::env::var("AOS_STORE_CRASH_START")
        .unwrap()
        .parse()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Four concurrent writers so that batches of several writes are committed together.
    for w in 0..4u64 {
        let s = s.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let n = start + i * 4 + w;
                s.apply(obj(&format!("k{n}"), n), false).await.unwrap();
                tx.send(n).unwrap();
            }
        });
    }
    let mut out = std::io::stdout();
    while let Some(n) = rx.recv().await {
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_writer_killed_mid_write_leaves_every_acknowledged_write() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        return crash_child_writer(path);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut acked: Vec<u64> = Vec::new();
    let rounds = 12;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "a_writer_killed_mid_write_leaves_every_acknowledged_write",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .env("AOS_STORE_CRASH_START", (round * 1_000_000u64).to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (first_tx, first_rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints its own "test … " prefix on the first line.
                if let Some((_, n)) = line.split_once("ack ") {
                    seen.push(n.trim().parse::<u64>().unwrap());
                    let _ = first_tx.send(());
                }
            }
            seen
        });
        // Once it is writing, let it write for a while (varied), then kill it without warning.
        first_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("round {round}: the child wrote nothing in 30 s"));
        std::thread::sleep(Duration::from_millis(20 + (round * 37) % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let seen = reader.join().unwrap();
        acked.extend(seen);
        let s = Embedded::open(EmbeddedOptions::file(&path))
            .unwrap_or_else(|e| panic!("round {round}: the store did not open after a kill: {e}"));
        let have: std::collections::HashSet<String> = rt
            .block_on(s.list("Item", &Selector::everything()))
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.metadata.name)
            .collect();
        for n in &acked {
            assert!(
                have.contains(&format!("k{n}")),
                "round {round}: acknowledged write k{n} is missing"
            );
        }
    }
    eprintln!(
        "{} acknowledged writes over {rounds} kills, all present",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "too few writes to mean anything: {}",
        acked.len()
    );
}
