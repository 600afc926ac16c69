//! A node for the runtime suites: a private containerd and an aosd using it, with helpers to
//! pack services, apply resources and wait for instances.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aos_testkit::containerd::ContainerdProcess;
use serde_json::Value;

use crate::{Aosd, AosdOptions};

/// aosd and its containerd. At the end aosd's process goes first (so that it starts nothing
/// while containerd is taken down), then containerd is cleaned up (its shims, tasks and rootfs
/// mounts), then aosd's mounts (layers and tmpfs).
pub struct Node {
    pub containerd: ContainerdProcess,
    pub aosd: Aosd,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.aosd.kill();
    }
}

impl Node {
    pub fn start(config: &str) -> Node {
        let containerd = ContainerdProcess::start();
        let aosd = Aosd::start_with(AosdOptions {
            config: Some(format!(
                "[runtimes.container]\nstop_grace = \"2s\"\nusage_interval = \"1s\"\n{config}"
            )),
            containerd: Some(containerd.socket.clone()),
            ..Default::default()
        });
        aosd.wait_node_ready();
        Node { containerd, aosd }
    }

    pub fn apply(&self, yaml: &str) {
        let f = self
            .aosd
            .path()
            .join(format!("apply-{}.yaml", rand_suffix()));
        std::fs::write(&f, yaml).unwrap();
        self.aosd.ok(&["apply", "-f", f.to_str().unwrap()]);
    }

    pub fn containers(&self) -> String {
        let out = Command::new("ctr")
            .arg("-a")
            .arg(&self.containerd.socket)
            .args([
                "-n",
                &self.aosd.namespace().unwrap(),
                "containers",
                "ls",
                "-q",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn until_instance(&self, name: &str, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        self.aosd.until("instance", name, secs, f)
    }

    pub fn active(&self, name: &str) -> Value {
        self.until_instance(name, 60, |v| {
            v["status"]["state"] == "active" && v["status"]["pid"].is_u64()
        })
    }

    /// A file of an instance's data: `state.dat` and `storage/…` in its volume, others beside.
    pub fn file(&self, name: &str, rel: &str) -> String {
        let dir = self.aosd.path().join("data/instances").join(name);
        std::fs::read_to_string(dir.join("volume").join(rel))
            .or_else(|_| std::fs::read_to_string(dir.join(rel)))
            .unwrap_or_default()
    }

    /// Waits until `aosctl logs NAME` shows `text`.
    pub fn logs_show(&self, name: &str, text: &str) -> String {
        let start = Instant::now();
        loop {
            let out = self.aosd.run(&["logs", name]);
            let s = String::from_utf8_lossy(&out.stdout).into_owned();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "logs of {name} never showed {text:?}: {s}\n{}",
                self.aosd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn rand_suffix() -> u64 {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

pub fn instance(name: &str, item: &str, version: &str, index: u64, extra: &str) -> String {
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: {name}\nspec:\n  itemId: {item}\n  version: {version}\n  subjectId: e2e\n  index: {index}\n  runtime: container\n{extra}---\n"
    )
}

pub fn item(item: &str, version: &str, source: &str) -> String {
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: {item}-{version}\nspec:\n  itemId: {item}\n  version: {version}\n  source:\n    {source}\n---\n"
    )
}

/// A service folder with this config and one script.
pub fn service(dir: &Path, config: &str, script: &str) -> PathBuf {
    std::fs::create_dir_all(dir.join("meta")).unwrap();
    std::fs::create_dir_all(dir.join("src/usr/bin")).unwrap();
    std::fs::write(dir.join("meta/config.yaml"), config).unwrap();
    let s = dir.join("src/usr/bin/svc.sh");
    std::fs::write(&s, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

pub fn pack(aosd: &Aosd, dir: &Path, out: &Path) {
    aosd.ok(&["pack", dir.to_str().unwrap(), "-o", out.to_str().unwrap()]);
}

impl Node {
    pub fn json(&self, kind: &str, name: &str) -> Value {
        self.aosd.json(kind, name)
    }
}

impl Node {
    /// Packs a service folder into `<dir>.tar` beside it and applies its Item (version `v1`)
    /// from that archive.
    pub fn install(&self, dir: &Path, item_id: &str) {
        let archive = dir.with_extension("tar");
        pack(&self.aosd, dir, &archive);
        self.apply(&item(
            item_id,
            "v1",
            &format!("archive: {}", archive.display()),
        ));
    }

    /// Packs a service folder into `<dir>.tar` beside it and pushes it to the insecure
    /// registry `host` as `reference` (`host/name:tag`).
    pub fn publish(&self, dir: &Path, host: &str, reference: &str) {
        let archive = dir.with_extension("tar");
        pack(&self.aosd, dir, &archive);
        let archive = archive.to_str().unwrap();
        self.aosd
            .ok(&["push", archive, reference, "--insecure", host]);
    }
}

/// A TCP port free on this host right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
