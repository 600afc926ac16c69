//! The health gate of both OS runtimes: after a boot into an update, the update is kept only
//! when every configured check passes (systemd units active where systemd runs, named aosd
//! Instances Ready, commands that exit 0), each within its timeout, for the whole probation
//! window. The `Health` port has this gate as its real implementation; tests script theirs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What the gate checks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// systemd units that must be active (skipped where systemd does not run).
    pub units: Vec<String>,
    /// aosd Instances that must be Ready.
    pub instances: Vec<String>,
    /// Commands (argv) that must exit 0.
    pub commands: Vec<Vec<String>>,
    /// How long one check may take to pass, in seconds.
    pub timeout_secs: u64,
    /// How long every check must keep passing after the boot, in seconds.
    pub probation_secs: u64,
    /// Time between two rounds of checks during probation, in seconds.
    pub interval_secs: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            units: Vec::new(),
            instances: Vec::new(),
            commands: Vec::new(),
            timeout_secs: 60,
            probation_secs: 120,
            interval_secs: 10,
        }
    }
}

impl HealthConfig {
    /// The probation window.
    pub fn probation(&self) -> Duration {
        Duration::from_secs(self.probation_secs)
    }

    /// Between two rounds.
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
}

/// The outcome of one round of checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    /// What failed, by check; empty when all passed.
    pub failed: Vec<String>,
    /// What passed or was skipped, by check.
    pub passed: Vec<String>,
}

impl Round {
    /// Every check passed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Runs a round of checks.
#[async_trait::async_trait]
pub trait Health: Send + Sync {
    /// One round: every check, each within its timeout.
    async fn round(&self) -> Round;
}

/// Whether an aosd Instance is Ready (the agent answers from its store).
#[async_trait::async_trait]
pub trait Readiness: Send + Sync {
    /// `Ok(true)` when the Instance `name` is Ready.
    async fn ready(&self, name: &str) -> Result<bool, String>;
}

/// The gate (see the module documentation).
pub struct HealthGate {
    config: HealthConfig,
    readiness: Arc<dyn Readiness>,
    systemd: bool,
}

impl HealthGate {
    /// A gate checking `config`, asking `readiness` about Instances.
    pub fn new(config: HealthConfig, readiness: Arc<dyn Readiness>) -> Self {
        HealthGate {
            config,
            readiness,
            systemd: std::path::Path::new("/run/systemd/system").exists(),
        }
    }

    /// Retries `once` every 200 ms until it passes or the timeout ends; the last failure.
    async fn within<F, Fut>(&self, mut once: F) -> Result<(), String>
    where
        F: FnMut() -> Fut + Send,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let end = tokio::time::Instant::now() + Duration::from_secs(self.config.timeout_secs);
        loop {
            let r = once().await;
            if r.is_ok() || tokio::time::Instant::now() >= end {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn run(argv: &[String], timeout: Duration) -> Result<(), String> {
    let (cmd, args) = argv.split_first().ok_or("an empty command")?;
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(cmd)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("no exit within {} s", timeout.as_secs()))?
    .map_err(|e| format!("failed to run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[async_trait::async_trait]
impl Health for HealthGate {
    async fn round(&self) -> Round {
        let mut r = Round::default();
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        for u in &self.config.units {
            let name = format!("unit {u}");
            if !self.systemd {
                r.passed
                    .push(format!("{name}: skipped (systemd does not run here)"));
                continue;
            }
            let argv = vec![
                "systemctl".into(),
                "is-active".into(),
                "--quiet".into(),
                u.clone(),
            ];
            match self.within(|| run(&argv, timeout)).await {
                Ok(()) => r.passed.push(name),
                Err(e) => r.failed.push(format!("{name} is not active ({e})")),
            }
        }
        for i in &self.config.instances {
            let name = format!("instance {i}");
            let res = self
                .within(|| async {
                    match self.readiness.ready(i).await {
                        Ok(true) => Ok(()),
                        Ok(false) => Err("not Ready".to_string()),
                        Err(e) => Err(e),
                    }
                })
                .await;
            match res {
                Ok(()) => r.passed.push(name),
                Err(e) => r.failed.push(format!("{name}: {e}")),
            }
        }
        for c in &self.config.commands {
            let name = format!("command {}", c.join(" "));
            match self.within(|| run(c, timeout)).await {
                Ok(()) => r.passed.push(name),
                Err(e) => r.failed.push(format!("{name}: {e}")),
            }
        }
        r
    }
}

/// The last round of health checks, as a record keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HealthRecord {
    /// Every check passed.
    pub ok: bool,
    /// When the round ended.
    pub at: DateTime<Utc>,
    /// What passed, or what failed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl HealthRecord {
    /// The record of `round`, ended at `at`.
    pub fn of(round: &Round, at: DateTime<Utc>) -> Self {
        let message = if round.ok() && round.passed.is_empty() {
            "passed (no checks configured)".to_string()
        } else if round.ok() {
            format!("passed: {}", round.passed.join(", "))
        } else {
            round.failed.join("; ")
        };
        HealthRecord {
            ok: round.ok(),
            at,
            message,
        }
    }
}

/// How an update is judged: the boots it gets, its probation window, the time between rounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Boots into an update tried before it fails.
    pub max_attempts: u32,
    /// How long an update must stay healthy.
    pub probation: Duration,
    /// Between two rounds of health checks.
    pub interval: Duration,
}

impl Limits {
    /// The [`verdict`] of a probation under these limits.
    pub fn verdict(
        &self,
        since: Option<DateTime<Utc>>,
        last: Option<&HealthRecord>,
        now: DateTime<Utc>,
    ) -> Verdict {
        verdict(since, last, now, self.probation, self.interval)
    }
}

/// Runs a round of `health` and records it at `machine`'s time.
pub async fn check(health: &dyn Health, machine: &dyn crate::machine::Machine) -> HealthRecord {
    let round = health.round().await;
    let h = HealthRecord::of(&round, machine.now());
    tracing::info!(ok = h.ok, message = %h.message, "health round");
    h
}

/// What a probation calls for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A round of checks is due.
    Check,
    /// Healthy for the whole window, with a round at or after its end: keep the update.
    Pass,
    /// The last round failed (its message).
    Fail(String),
    /// The next round comes after this.
    Wait(Duration),
}

/// The verdict of a probation that began at `since` (the last round's time when unknown),
/// whose last round is `last`, at `now`.
pub fn verdict(
    since: Option<DateTime<Utc>>,
    last: Option<&HealthRecord>,
    now: DateTime<Utc>,
    probation: Duration,
    interval: Duration,
) -> Verdict {
    let Some(h) = last else {
        return Verdict::Check;
    };
    if !h.ok {
        return Verdict::Fail(h.message.clone());
    }
    let since = since.unwrap_or(h.at);
    let window = chrono::Duration::from_std(probation).unwrap_or_default();
    let every = chrono::Duration::from_std(interval).unwrap_or_default();
    if now - since >= window && h.at - since >= window.min(now - since) {
        Verdict::Pass
    } else if now - h.at >= every || now - since >= window {
        Verdict::Check
    } else {
        Verdict::Wait((every - (now - h.at)).to_std().unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;

    #[async_trait::async_trait]
    impl Readiness for Never {
        async fn ready(&self, _: &str) -> Result<bool, String> {
            Ok(false)
        }
    }

    #[tokio::test]
    async fn a_round_passes_only_when_every_check_passes_within_its_timeout() {
        let cfg = HealthConfig {
            commands: vec![vec!["true".into()]],
            timeout_secs: 1,
            ..Default::default()
        };
        let gate = HealthGate::new(cfg.clone(), Arc::new(Never));
        assert!(gate.round().await.ok());
        let gate = HealthGate::new(
            HealthConfig {
                commands: vec![vec!["true".into()], vec!["false".into()]],
                instances: vec!["web".into()],
                ..cfg
            },
            Arc::new(Never),
        );
        let r = gate.round().await;
        assert_eq!(r.failed.len(), 2, "{r:?}");
        assert!(r
            .failed
            .iter()
            .any(|f| f.contains("instance web: not Ready")));
    }

    #[test]
    fn a_probation_passes_only_with_a_healthy_round_at_the_end_of_its_window() {
        let t0 = chrono::Utc::now();
        let s = |n: i64| t0 + chrono::Duration::seconds(n);
        let (win, every) = (Duration::from_secs(60), Duration::from_secs(20));
        let rec = |ok: bool, at: i64| HealthRecord {
            ok,
            at: s(at),
            message: "m".into(),
        };
        assert_eq!(verdict(Some(t0), None, s(0), win, every), Verdict::Check);
        assert_eq!(
            verdict(Some(t0), Some(&rec(true, 0)), s(5), win, every),
            Verdict::Wait(Duration::from_secs(15))
        );
        assert_eq!(
            verdict(Some(t0), Some(&rec(true, 0)), s(20), win, every),
            Verdict::Check
        );
        assert_eq!(
            verdict(Some(t0), Some(&rec(true, 45)), s(61), win, every),
            Verdict::Check
        );
        assert_eq!(
            verdict(Some(t0), Some(&rec(true, 60)), s(61), win, every),
            Verdict::Pass
        );
        assert_eq!(
            verdict(Some(t0), Some(&rec(false, 30)), s(31), win, every),
            Verdict::Fail("m".into())
        );
    }
}
