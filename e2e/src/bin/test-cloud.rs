//! The test cloud as a process, for `hack/demo.sh cloud`: `test-cloud DIR` makes its
//! certificates in DIR, listens on a free loopback port, writes DIR/cloud.toml (aosd's
//! `[cloud]` section without the registry), sends DIR/desired.json to the node each time the
//! file changes (and on every new session), and appends every message from the node to
//! DIR/received.jsonl. It runs until killed.
// A tool for demos: it stops at the first failure.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aos_e2e::cloud::TestCloud;

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("usage: test-cloud DIR"));
    std::fs::create_dir_all(&dir).unwrap();
    let cloud = TestCloud::start(&dir);
    std::fs::write(dir.join("cloud.toml"), cloud.section()).unwrap();
    println!("{}", cloud.url());
    let desired = dir.join("desired.json");
    let mut sent: Option<(SystemTime, usize)> = None;
    let mut logged = 0;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("received.jsonl"))
        .unwrap();
    loop {
        let got = cloud.received();
        for m in &got[logged..] {
            writeln!(log, "{m}").unwrap();
        }
        logged = got.len();
        let changed = std::fs::metadata(&desired).and_then(|m| m.modified()).ok();
        let now = changed.map(|t| (t, cloud.sessions()));
        if now.is_some() && now != sent && cloud.sessions() > 0 {
            if let Ok(text) = std::fs::read_to_string(&desired) {
                cloud.send(&text, 10);
                eprintln!("test-cloud: sent {}", desired.display());
                sent = now;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
