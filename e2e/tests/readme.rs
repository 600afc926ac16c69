//! README's commands, run as a user runs them: `hack/demo.sh` starts the demo (in a directory
//! of this test), then every `aosctl` line of README's `sh` blocks runs against it, in order,
//! through bash, from a directory that has `examples/`; `hack/registry.sh` gives the registry
//! the push lines use. A command that follows (`-w`, `-f`) must still be running after a few
//! seconds, having printed something; every other one must exit 0. `hack/demo.sh stop` then
//! takes the demo down and must leave no mount of it behind.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// Every line of the README's `sh` blocks that runs aosctl, in order.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if in_sh && (line.starts_with("aosctl ") || line.contains("(aosctl ")) {
            out.push(line.to_string());
        }
    }
    out
}

/// A command that runs until interrupted.
fn follows(cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split('#').next().unwrap().split_whitespace().collect();
    words.contains(&"-w") || (words.get(1) == Some(&"logs") && words.contains(&"-f"))
}

struct Demo {
    dir: tempfile::TempDir,
    namespace: String,
}

impl Demo {
    fn script(&self, arg: Option<&str>) -> Command {
        let mut c = Command::new(repo().join("hack/demo.sh"));
        c.args(arg)
            .env("AOSD_DEMO_DIR", self.dir.path())
            .env("AOSD_DEMO_NAMESPACE", &self.namespace);
        c
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.script(Some("stop")).output();
    }
}

struct Registry(PathBuf);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("hack/registry.sh"))
            .arg("stop")
            .arg(&self.0)
            .output();
    }
}

#[test]
fn every_aosctl_command_of_the_readme_runs_against_the_demo() {
    let commands = readme_commands();
    assert!(
        commands.len() > 20,
        "README's commands were not found: {commands:?}"
    );
    let demo = Demo {
        dir: tempfile::Builder::new()
            .prefix("aos-readme-")
            .tempdir()
            .unwrap(),
        namespace: aos_e2e::unique_namespace(),
    };
    let out = demo.script(None).output().unwrap();
    assert!(
        out.status.success(),
        "hack/demo.sh failed:\n{}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(demo.dir.path().join("aosd.log")).unwrap_or_default()
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("state-writer-demo-0"), "{shown}");

    // A registry of README's script, on a port of this test.
    let reg_dir = demo.dir.path().join("registry");
    let _registry = Registry(reg_dir.clone());
    let registry = aos_e2e::run_ok(
        Command::new(repo().join("hack/registry.sh"))
            .arg("start")
            .arg(&reg_dir)
            .arg(aos_e2e::node::free_port().to_string()),
    );

    let work = demo.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::os::unix::fs::symlink(repo().join("examples"), work.join("examples")).unwrap();
    let path = format!(
        "{}:{}",
        aos_e2e::bin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for cmd in &commands {
        eprintln!("$ {cmd}");
        let mut child = Command::new("bash")
            .args(["-c", cmd])
            .current_dir(&work)
            .env("AOSD_SOCKET", demo.dir.path().join("aosd.sock"))
            .env("PATH", &path)
            .env("REGISTRY", &registry)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let limit = if follows(cmd) { 3 } else { 120 };
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if started.elapsed() > Duration::from_secs(limit) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (mut stdout, mut stderr) = (String::new(), String::new());
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        match status {
            None if follows(cmd) => assert!(!stdout.is_empty(), "{cmd}: printed nothing"),
            None => panic!("{cmd}: still running after {limit} s\n{stdout}\n{stderr}"),
            Some(s) => assert!(
                s.success() && !follows(cmd),
                "{cmd}: {s}\nstdout: {stdout}\nstderr: {stderr}"
            ),
        }
    }

    let out = demo.script(Some("stop")).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        aos_e2e::mounts_under(demo.dir.path()).is_empty(),
        "the demo left mounts behind"
    );
}
