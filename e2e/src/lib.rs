//! Helpers for end-to-end tests and benchmarks: start an isolated aosd (own data dir, socket and
//! node id) from the built binaries, run aosctl against it, and clean up on drop.
// Test support: a fixture that fails fails its test.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

pub mod bench;
pub mod cloud;
pub mod hosts;
pub mod images;
pub mod net;
pub mod node;
mod procfs;
pub mod unit;
pub use aos_testkit::{bin, bin_dir};
pub use procfs::{cpu_ticks, proc_kb, rss_bytes};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The checkout's `examples/` directory.
pub fn examples() -> String {
    format!("{}/../examples", env!("CARGO_MANIFEST_DIR"))
}

/// A running aosd with its own directory; killed and cleaned up when dropped.
pub struct Aosd {
    opts: AosdOptions,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub child: Child,
    /// Time from spawn to the first answered health call.
    pub ready_after: Duration,
}

/// Extra settings for [`Aosd::start_with`].
#[derive(Default, Clone)]
pub struct AosdOptions {
    pub config: Option<String>,
    pub args: Vec<String>,
    /// containerd's socket; without one aosd is pointed at a socket that does not exist, so
    /// that no test touches a containerd it did not start.
    pub containerd: Option<PathBuf>,
    /// A network namespace to run aosd in (one standing for another host): `nsenter --net`,
    /// nothing else of the test's namespaces changes.
    pub netns: Option<PathBuf>,
    /// Where the aosd binary (and the aos-logger beside it) is taken from, for a benchmark
    /// comparing builds (another cargo profile); `None`: [`bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// Set in aosd's environment (a benchmark measuring aosd as its unit file starts it).
    pub env: Vec<(String, String)>,
}

/// A containerd namespace of this test process alone (runc state is shared per namespace).
pub fn unique_namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("aos-e2e-{}-{n}", std::process::id())
}

impl Aosd {
    pub fn start() -> Aosd {
        Self::start_with(AosdOptions::default())
    }

    pub fn start_with(opts: AosdOptions) -> Aosd {
        let dir = tempfile::Builder::new()
            .prefix("aosd-e2e-")
            .tempdir()
            .unwrap();
        // Other users must reach the socket for the permission tests.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("aosd.sock");
        std::fs::write(
            dir.path().join("aosd.toml"),
            opts.config.clone().unwrap_or_default(),
        )
        .unwrap();
        let started = Instant::now();
        let mut opts = opts;
        match &opts.containerd {
            Some(sock) => opts.args.extend([
                "--containerd-socket".to_string(),
                sock.display().to_string(),
                "--namespace".to_string(),
                unique_namespace(),
            ]),
            None => opts.args.extend([
                "--containerd-socket".to_string(),
                dir.path().join("no-containerd.sock").display().to_string(),
            ]),
        }
        let child = Self::spawn(dir.path(), &socket, &opts);
        let mut aosd = Aosd {
            opts,
            dir,
            socket,
            child,
            ready_after: Duration::ZERO,
        };
        aosd.ready_after = aosd.wait_ready(started);
        aosd
    }

    fn spawn(dir: &Path, socket: &Path, opts: &AosdOptions) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("aosd.log"))
            .unwrap();
        let aosd = match &opts.bin_dir {
            Some(d) => d.join("aosd"),
            None => bin("aosd"),
        };
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(aosd);
                c
            }
            None => Command::new(aosd),
        };
        cmd.arg("--config")
            .arg(dir.join("aosd.toml"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--socket")
            .arg(socket)
            .args(
                // A test may name the node itself (several nodes of one unit).
                (!opts.args.iter().any(|a| a == "--node-id"))
                    .then_some(["--node-id", "e2e-node"])
                    .into_iter()
                    .flatten(),
            )
            .args(&opts.args)
            .env_remove("AOSD_SOCKET")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("aosd starts")
    }

    /// Stops aosd with SIGTERM, returns how it exited, and starts it again on the same data.
    pub fn restart(&mut self) -> std::process::ExitStatus {
        let status = self.terminate();
        let started = Instant::now();
        self.child = Self::spawn(self.dir.path(), &self.socket, &self.opts);
        self.ready_after = self.wait_ready(started);
        status
    }

    /// Kills aosd with SIGKILL (no cleanup at all) and starts it again on the same data.
    pub fn crash_and_restart(&mut self) {
        self.crash_and_restart_while(|_| {});
    }

    /// Kills aosd, starts it again and runs `meanwhile` on the new process (to bring back what
    /// it waits for, say) before waiting (20 s from then) for its API.
    pub fn crash_and_restart_while(&mut self, meanwhile: impl FnOnce(&mut Child)) {
        self.kill();
        self.child = Self::spawn(self.dir.path(), &self.socket, &self.opts);
        meanwhile(&mut self.child);
        self.ready_after = self.wait_ready(Instant::now());
    }

    /// The containerd namespace this aosd uses, if it was given a containerd.
    pub fn namespace(&self) -> Option<String> {
        let i = self.opts.args.iter().position(|a| a == "--namespace")?;
        self.opts.args.get(i + 1).cloned()
    }

    /// Kills aosd's process (as a crash would) and reaps it; its mounts stay until the drop.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        self.child.wait().unwrap()
    }

    fn wait_ready(&mut self, started: Instant) -> Duration {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("aosd exited with {status}:\n{}", self.log());
            }
            let ok = rt.block_on(async {
                match aosctl::client::Client::connect(&self.socket).await {
                    Ok(c) => c.health().await.is_ok(),
                    Err(_) => false,
                }
            });
            if ok {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "aosd not ready in 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// What aosd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("aosd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An aosctl command aimed at this aosd.
    pub fn aosctl(&self) -> Command {
        let mut c = Command::new(bin("aosctl"));
        c.arg("--socket").arg(&self.socket);
        c
    }

    /// An aosctl command run as another user. The binary is first copied to a directory every
    /// user can read (a checkout under a 0700 directory, as `mktemp -d` makes, is not one).
    pub fn aosctl_as(&self, uid: u32, gid: u32) -> Command {
        use std::os::unix::process::CommandExt;
        let public = self.dir.path().join("public-bin");
        let copy = public.join("aosctl");
        if !copy.exists() {
            std::fs::create_dir_all(&public).unwrap();
            std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o755)).unwrap();
            let tmp = public.join(format!(".aosctl-{}", std::process::id()));
            std::fs::copy(bin("aosctl"), &tmp).unwrap();
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
            std::fs::rename(&tmp, &copy).unwrap();
        }
        let mut c = Command::new(copy);
        c.arg("--socket").arg(&self.socket);
        // std drops root's supplementary groups when it sets the uid.
        c.uid(uid).gid(gid);
        c
    }

    /// Runs `f` with a client of this aosd's API (the library aosctl is built on), to write as
    /// another program would (a controller, the cloud) or to send what aosctl would refuse.
    pub fn with_client<T, F>(&self, f: impl FnOnce(aosctl::client::Client) -> F) -> T
    where
        F: std::future::Future<Output = T>,
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let c = aosctl::client::Client::connect(&self.socket).await.unwrap();
            f(c).await
        })
    }

    /// An aosd whose socket everyone may open and whose writers are the group `users` (gid
    /// 100): the shape of the permission tests.
    pub fn with_writers_group() -> Aosd {
        Self::with_writers_group_and(None)
    }

    /// [`Aosd::with_writers_group`] with this config.
    pub fn with_writers_group_and(config: Option<String>) -> Aosd {
        Aosd::start_with(AosdOptions {
            args: vec![
                "--socket-mode".into(),
                "0666".into(),
                "--group".into(),
                "users".into(),
            ],
            config,
            ..Default::default()
        })
    }

    /// Runs aosctl as another user (see [`Aosd::aosctl_as`]).
    pub fn run_as(&self, uid: u32, gid: u32, args: &[&str]) -> Output {
        self.aosctl_as(uid, gid)
            .args(args)
            .output()
            .expect("aosctl runs as another user")
    }

    /// A copy of `file` that every user can read (in this aosd's directory).
    pub fn public_file(&self, file: &Path) -> PathBuf {
        let to = self.dir.path().join(file.file_name().expect("a file name"));
        std::fs::copy(file, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o644)).unwrap();
        to
    }

    /// Runs aosctl with these arguments.
    pub fn run(&self, args: &[&str]) -> Output {
        self.aosctl().args(args).output().expect("aosctl runs")
    }

    /// Waits until the node has reported itself (its Ready condition).
    pub fn wait_node_ready(&self) {
        // The API answers before the Node exists: wait for it to appear, then to be Ready.
        self.until("node", "e2e-node", 20, |v| {
            condition(v, "Ready")["status"] == "True"
        });
    }

    /// The object as JSON.
    pub fn json(&self, kind: &str, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["get", kind, name, "-o", "json"])).unwrap()
    }

    /// Polls until `f` holds for the object (or panics after `secs`).
    pub fn until(
        &self,
        kind: &str,
        name: &str,
        secs: u64,
        f: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let out = self.run(&["get", kind, name, "-o", "json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                if f(&v) {
                    return v;
                }
                if start.elapsed() > Duration::from_secs(secs) {
                    panic!(
                        "{kind}/{name} did not get there in {secs} s: {v:#}\n{}",
                        self.log()
                    );
                }
            } else if start.elapsed() > Duration::from_secs(secs) {
                panic!("{kind}/{name} not found in {secs} s\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A boot partition image of the machine in a box (`version`, `healthy`, `size` bytes)
    /// packed with `aosctl pack --boot` into this aosd's folder: the archive and pack's output.
    pub fn pack_boot(&self, version: &str, healthy: bool, size: usize) -> (PathBuf, String) {
        let img = self.path().join(format!("boot-{version}.img"));
        std::fs::write(&img, aos_slots::sim::image(version, healthy, size)).unwrap();
        let archive = self.path().join(format!("boot-{version}.tar"));
        let out = self.ok(&[
            "pack",
            "--boot",
            img.to_str().unwrap(),
            "-o",
            archive.to_str().unwrap(),
        ]);
        (archive, out)
    }

    /// Polls `get events` until one about `kind/name` has `reason` (or panics after `secs`).
    pub fn event(&self, kind: &str, name: &str, reason: &str, secs: u64) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let list: serde_json::Value =
                serde_json::from_str(&self.ok(&["get", "events", "-o", "json"])).unwrap();
            let found = list["items"].as_array().and_then(|items| {
                items.iter().find(|e| {
                    let s = &e["spec"];
                    s["involvedObject"]["kind"] == kind
                        && s["involvedObject"]["name"] == name
                        && s["reason"] == reason
                })
            });
            if let Some(e) = found {
                return e.clone();
            }
            if start.elapsed() > Duration::from_secs(secs) {
                panic!("no {reason} event about {kind}/{name} in {secs} s: {list:#}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs aosctl and returns its stdout, failing the test (with both outputs) unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "aosctl {args:?} failed with {}:\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Aosd {
    fn drop(&mut self) {
        self.kill();

        // Layers stay mounted across restarts of aosd; a test's must not outlive it.
        for m in mounts_under(self.dir.path()) {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
    }
}

pub use aos_image::layerstore::mounts_under;

/// The condition of type `t` in an object's JSON (`null` when there is none).
pub fn condition(v: &serde_json::Value, t: &str) -> serde_json::Value {
    v["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == t))
        .cloned()
        .unwrap_or_default()
}

/// Runs a command that must succeed; its stdout, trimmed (a failure shows stderr).
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Rewrites the stored object under `key` (`Kind/name`) of a closed store file with `f`,
/// sealed as the store seals records: what a crash between two writes can leave.
pub fn edit_stored(store: &Path, key: &str, f: impl FnOnce(&mut serde_json::Value)) {
    use redb::ReadableDatabase;
    use sha2::Digest;
    const OBJECTS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("objects");
    let db = redb::Database::create(store).unwrap();
    let bytes = {
        let r = db.begin_read().unwrap();
        let t = r.open_table(OBJECTS).unwrap();
        t.get(key).unwrap().unwrap().value().to_vec()
    };
    let mut v: serde_json::Value = serde_json::from_slice(&bytes[9..]).unwrap();
    f(&mut v);
    let json = serde_json::to_vec(&v).unwrap();
    let mut sealed = vec![1u8];
    sealed.extend_from_slice(&sha2::Sha256::digest(&json)[..8]);
    sealed.extend_from_slice(&json);
    let w = db.begin_write().unwrap();
    w.open_table(OBJECTS)
        .unwrap()
        .insert(key, sealed.as_slice())
        .unwrap();
    w.commit().unwrap();
}
