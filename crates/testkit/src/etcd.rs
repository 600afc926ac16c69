//! A real etcd cluster on loopback (Debian's `etcd-server`): `n` members with their own data
//! dirs and ports, fast elections, and a member that can be killed and started again on its
//! data, for the store's etcd backend and the multi-node tests.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::registry::free_port;

struct Member {
    name: String,
    client: u16,
    peer: u16,
    /// Plain HTTP `/health` (and `/metrics`), whether clients use TLS or not.
    metrics: u16,
    child: Option<Child>,
}

/// Files of a cluster whose clients must use TLS with a certificate signed by `ca`.
#[derive(Clone, Debug)]
pub struct EtcdTlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Members are killed when this is dropped.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    tls: Option<EtcdTlsFiles>,
    /// Clients are served on this address too (besides loopback).
    also_at: Option<std::net::Ipv4Addr>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until the cluster has a leader.
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, None, None)
    }

    /// Starts `n` members that also serve clients on `addr` (an address of this host, such as
    /// a test bridge's that network namespaces standing for other hosts reach):
    /// [`EtcdCluster::endpoints_at`] names them there.
    pub fn start_reachable_at(n: usize, addr: std::net::Ipv4Addr) -> EtcdCluster {
        Self::start_with(n, None, Some(addr))
    }

    /// Starts `n` members that serve clients over TLS only, with this server certificate, and
    /// accept only client certificates signed by `tls.ca`.
    pub fn start_tls(n: usize, tls: EtcdTlsFiles) -> EtcdCluster {
        Self::start_with(n, Some(tls), None)
    }

    fn start_with(
        n: usize,
        tls: Option<EtcdTlsFiles>,
        also_at: Option<std::net::Ipv4Addr>,
    ) -> EtcdCluster {
        // A port picked free may be taken by another test before etcd binds it: a member that
        // exits at its first start is tried again, the whole cluster on fresh ports.
        for _ in 0..3 {
            let mut c = Self::spawn_new(n, tls.clone(), also_at);
            match c.await_members(Duration::from_secs(30)) {
                Ok(()) => return c,
                Err(i) => eprintln!(
                    "etcd member {} exited at start (a port taken?): starting the cluster again",
                    c.members[i].name
                ),
            }
        }
        panic!("etcd did not start in 3 tries");
    }

    fn spawn_new(
        n: usize,
        tls: Option<EtcdTlsFiles>,
        also_at: Option<std::net::Ipv4Addr>,
    ) -> EtcdCluster {
        let dir = tempfile::Builder::new()
            .prefix("aos-etcd-")
            .tempdir()
            .unwrap();
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                metrics: free_port(),
                child: None,
            })
            .collect();
        let token = dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut c = EtcdCluster {
            dir,
            token,
            members,
            tls,
            also_at,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c
    }

    /// Client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client))
            .collect()
    }

    /// Client URLs of every member at the address given to
    /// [`EtcdCluster::start_reachable_at`].
    pub fn endpoints_at(&self, addr: std::net::Ipv4Addr) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{addr}:{}", self.scheme(), m.client))
            .collect()
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Where member `i` logs.
    pub fn log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops member `i` with SIGSTOP: it keeps its sockets but does nothing, so that it falls
    /// behind the others (a member that lags); [`EtcdCluster::resume`] lets it run again.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
    }

    /// Lets a paused member `i` run again (SIGCONT).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&self, i: usize, sig: &str) {
        if let Some(c) = &self.members[i].child {
            let ok = std::process::Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} of etcd member {i} failed");
        }
    }

    /// Starts member `i` again on its data dir and waits until the cluster is healthy.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Kills every member: the store is gone until [`EtcdCluster::start_stopped`].
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every member that is not running, on its data, and waits until they are healthy.
    pub fn start_stopped(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    fn spawn(&mut self, i: usize) {
        let cluster: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client);
        let peer = format!("http://127.0.0.1:{}", m.peer);
        let metrics = format!("http://127.0.0.1:{}", m.metrics);
        let mut cmd = Command::new("etcd");
        if let Some(t) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&t.cert)
                .arg("--key-file")
                .arg(&t.key)
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(self.dir.path().join(&m.name))
            .args([
                "--listen-client-urls",
                &match self.also_at {
                    Some(a) => format!("{client},{}://{a}:{}", self.scheme(), m.client),
                    None => client.clone(),
                },
            ])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-metrics-urls", &metrics])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &cluster.join(",")])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd (Debian's etcd-server; hack/setup.sh installs it)");
        self.members[i].child = Some(child);
    }

    /// Waits until every running member says it is healthy (it has a leader).
    pub fn wait_healthy(&mut self, timeout: Duration) {
        if let Err(i) = self.await_members(timeout) {
            let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
            panic!(
                "etcd member {} exited; its log:\n{log}",
                self.members[i].name
            );
        }
    }

    /// [`EtcdCluster::wait_healthy`], but a member that exits is `Err` with its index.
    fn await_members(&mut self, timeout: Duration) -> Result<(), usize> {
        let end = Instant::now() + timeout;
        for i in 0..self.members.len() {
            let port = self.members[i].metrics;
            let Some(child) = self.members[i].child.as_mut() else {
                continue;
            };
            while !healthy(port) {
                if child.try_wait().ok().flatten().is_some() {
                    return Err(i);
                }
                if Instant::now() > end {
                    let log = std::fs::read_to_string(self.log(i)).unwrap_or_default();
                    panic!(
                        "etcd member {} is not healthy; its log:\n{log}",
                        self.members[i].name
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }
}

/// etcd's `/health` on the metrics port says `"health":"true"`.
fn healthy(port: u16) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.contains("\"health\":\"true\"")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
