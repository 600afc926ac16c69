//! Probes, as kubelet has them: a startup probe gates the others; readiness decides the Ready
//! condition; liveness (and a startup probe that gives up) asks for a restart. Each running
//! instance with probes has a task of its own here; a change of result wakes the controller.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aos_api::{Probe, Probes};
use aos_containerd::Containers;
use aos_reconcile::Waker;

mod netns;

/// What the probes of one task found so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProbeState {
    /// The startup probe passed (or there is none).
    pub started: bool,
    /// The readiness probe passed (or there is none).
    pub ready: bool,
    /// Set when liveness (or startup) failed: the task must be restarted.
    pub failed: Option<String>,
    /// The last failure, for the Ready condition.
    pub message: String,
}

struct Running {
    key: String,
    state: Arc<Mutex<ProbeState>>,
    task: tokio::task::JoinHandle<()>,
}

/// The probe tasks of every instance.
pub struct Probers {
    containers: Arc<dyn Containers>,
    waker: OnceLock<Waker>,
    running: Mutex<HashMap<String, Running>>,
    http: Result<reqwest::Client, String>,
}

/// Where HTTP and TCP probes connect, and what exec probes run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The address HTTP and TCP probes connect to by default.
    pub host: String,
    /// The network namespace to connect from (an instance's own, isolated one); `None`: from
    /// aosd's (the instance is on a Network, or on the host's).
    pub netns: Option<std::path::PathBuf>,
    /// User of exec probes.
    pub uid: u32,
    /// Group of exec probes.
    pub gid: u32,
    /// Environment of exec probes.
    pub env: Vec<String>,
}

/// The HTTP client of the probes, which speak plain HTTP only: it trusts no CA root, so that
/// it never reads the system's (a minimal root has none, and `Client::default()` then panics).
fn probe_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only(Vec::new())
        .build()
        .map_err(|e| {
            tracing::warn!(error = %e, "no HTTP client: HTTP probes fail");
            format!("no HTTP client: {e}")
        })
}

impl Probers {
    /// Probers that exec through `containers`.
    pub fn new(containers: Arc<dyn Containers>) -> Probers {
        Probers {
            containers,
            waker: OnceLock::new(),
            running: Mutex::new(HashMap::new()),
            http: probe_client(),
        }
    }

    /// Wakes an instance when what its probes found changes.
    pub fn set_waker(&self, w: Waker) {
        let _ = self.waker.set(w);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the probes of `name` run for the task identified by `key` (restarting them
    /// for a new task) and returns what they found so far.
    pub fn ensure(&self, name: &str, key: &str, probes: &Probes, target: Target) -> ProbeState {
        let mut running = self.lock();
        if let Some(r) = running.get(name) {
            if r.key == key {
                return r.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
            }
        }
        if let Some(old) = running.remove(name) {
            old.task.abort();
        }
        let state = Arc::new(Mutex::new(ProbeState {
            started: probes.startup.is_none(),
            ready: false,
            ..ProbeState::default()
        }));
        let ctx = ProbeCtx {
            name: name.to_string(),
            containers: self.containers.clone(),
            http: self.http.clone(),
            waker: self.waker.get().cloned(),
            state: state.clone(),
            target,
        };
        let task = tokio::spawn(run(ctx, probes.clone()));
        let snapshot = state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        running.insert(
            name.to_string(),
            Running {
                key: key.to_string(),
                state,
                task,
            },
        );
        snapshot
    }

    /// The probes that run for `name`: the key of their task and what they found so far.
    pub fn current(&self, name: &str) -> Option<(String, ProbeState)> {
        let running = self.lock();
        let r = running.get(name)?;
        let st = r.state.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some((r.key.clone(), st))
    }

    /// Stops the probes of `name`.
    pub fn stop(&self, name: &str) {
        if let Some(r) = self.lock().remove(name) {
            r.task.abort();
        }
    }
}

struct ProbeCtx {
    name: String,
    containers: Arc<dyn Containers>,
    http: Result<reqwest::Client, String>,
    waker: Option<Waker>,
    state: Arc<Mutex<ProbeState>>,
    target: Target,
}

impl ProbeCtx {
    fn update(&self, f: impl FnOnce(&mut ProbeState)) {
        let changed = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let before = s.clone();
            f(&mut s);
            *s != before
        };
        if changed {
            if let Some(w) = &self.waker {
                w.wake(&self.name);
            }
        }
    }

    /// One check; `Err` says why it failed.
    async fn check(&self, p: &Probe, seq: u64) -> Result<(), String> {
        let timeout = p.timeout.map(|d| d.0).unwrap_or(Duration::from_secs(1));
        let fut = async {
            if let (Some(h), Some(ns)) = (&p.http_get, &self.target.netns) {
                let host = h.host.clone().unwrap_or_else(|| self.target.host.clone());
                let url = format!("http://{host}:{}{}", h.port, h.path);
                let stream = netns::connect(ns, &host, h.port, timeout)
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                return match netns::get(stream, &host, &h.path).await {
                    Ok(code) if (200..400).contains(&code) => Ok(()),
                    Ok(code) => Err(format!("GET {url}: HTTP {code}")),
                    Err(e) => Err(format!("GET {url}: {e}")),
                };
            }
            if let (Some(t), Some(ns)) = (&p.tcp_socket, &self.target.netns) {
                let host = t.host.clone().unwrap_or_else(|| self.target.host.clone());
                return netns::connect(ns, &host, t.port, timeout)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("connect {host}:{}: {e}", t.port));
            }
            if let Some(h) = &p.http_get {
                let host = h.host.clone().unwrap_or_else(|| self.target.host.clone());
                let url = format!("http://{host}:{}{}", h.port, h.path);
                let http = self.http.as_ref().map_err(|e| format!("GET {url}: {e}"))?;
                let resp = http.get(&url).timeout(timeout).send().await;
                return match resp {
                    Ok(r) if (200..400).contains(&r.status().as_u16()) => Ok(()),
                    Ok(r) => Err(format!("GET {url}: HTTP {}", r.status().as_u16())),
                    Err(e) => Err(format!("GET {url}: {e}")),
                };
            }
            if let Some(t) = &p.tcp_socket {
                let host = t.host.clone().unwrap_or_else(|| self.target.host.clone());
                return tokio::net::TcpStream::connect((host.as_str(), t.port))
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("connect {host}:{}: {e}", t.port));
            }
            if let Some(e) = &p.exec {
                let exec_id = format!("probe-{seq}");
                return match self
                    .containers
                    .exec(
                        &self.name,
                        &exec_id,
                        &e.command,
                        &self.target.env,
                        (self.target.uid, self.target.gid),
                    )
                    .await
                {
                    Ok(0) => Ok(()),
                    Ok(code) => Err(format!("{:?} exited with {code}", e.command)),
                    Err(err) => Err(err.to_string()),
                };
            }
            Err("the probe has no check".into())
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}

fn period(p: &Probe) -> Duration {
    p.period.map(|d| d.0).unwrap_or(Duration::from_secs(10))
}

async fn run(ctx: ProbeCtx, probes: Probes) {
    let ctx = Arc::new(ctx);
    let seq = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let next = {
        let seq = seq.clone();
        move || seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    };
    if let Some(p) = &probes.startup {
        tokio::time::sleep(p.initial_delay.map(|d| d.0).unwrap_or_default()).await;
        let threshold = p.failure_threshold.unwrap_or(3);
        let mut failures = 0;
        loop {
            match ctx.check(p, next()).await {
                Ok(()) => {
                    ctx.update(|s| s.started = true);
                    break;
                }
                Err(e) => {
                    failures += 1;
                    if failures >= threshold {
                        ctx.update(|s| s.failed = Some(format!("startup probe failed: {e}")));
                        return;
                    }
                }
            }
            tokio::time::sleep(period(p)).await;
        }
    }
    let readiness = {
        let ctx = ctx.clone();
        let next = next.clone();
        let p = probes.readiness.clone();
        async move {
            let Some(p) = p else {
                ctx.update(|s| s.ready = true);
                return;
            };
            tokio::time::sleep(p.initial_delay.map(|d| d.0).unwrap_or_default()).await;
            let (fail_at, ok_at) = (
                p.failure_threshold.unwrap_or(3),
                p.success_threshold.unwrap_or(1),
            );
            let (mut fails, mut oks) = (0, 0);
            loop {
                match ctx.check(&p, next()).await {
                    Ok(()) => {
                        fails = 0;
                        oks += 1;
                        if oks >= ok_at {
                            ctx.update(|s| {
                                s.ready = true;
                                s.message.clear();
                            });
                        }
                    }
                    Err(e) => {
                        oks = 0;
                        fails += 1;
                        // Not ready until a first success; afterwards after `fail_at` failures.
                        let ready_before =
                            ctx.state.lock().unwrap_or_else(|x| x.into_inner()).ready;
                        if !ready_before || fails >= fail_at {
                            ctx.update(|s| {
                                s.ready = false;
                                s.message = format!("readiness probe failed: {e}");
                            });
                        }
                    }
                }
                tokio::time::sleep(period(&p)).await;
            }
        }
    };
    let liveness = {
        let ctx = ctx.clone();
        let p = probes.liveness.clone();
        async move {
            let Some(p) = p else { return };
            tokio::time::sleep(p.initial_delay.map(|d| d.0).unwrap_or_default()).await;
            let threshold = p.failure_threshold.unwrap_or(3);
            let mut fails = 0;
            loop {
                match ctx.check(&p, next()).await {
                    Ok(()) => fails = 0,
                    Err(e) => {
                        fails += 1;
                        if fails >= threshold {
                            ctx.update(|s| s.failed = Some(format!("liveness probe failed: {e}")));
                            return;
                        }
                    }
                }
                tokio::time::sleep(period(&p)).await;
            }
        }
    };
    tokio::join!(readiness, liveness);
}
