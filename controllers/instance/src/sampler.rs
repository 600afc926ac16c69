//! Usage of running instances, sampled in one pass. Every `usage_interval` the sampler reads
//! each running task's cgroup, volume and network counters (no containerd call and no store
//! read: the controller's cache says which instances run), keeps the latest reading, and wakes
//! an Instance only when its usage moved by more than `usage_step` since its status was
//! written, or that status is older than `usage_refresh`. The reconcile then writes the reading
//! kept here ([`Sampler::latest`]), so an idle node writes nothing and reconciles nothing for
//! usage; between writes a status holds its last value to within the step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aos_api::{InstanceSpec, InstanceState, InstanceUsage, Object, RuntimeType};
use aos_reconcile::{Reader, Waker};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::host::Sample;
use crate::InstanceEnv;

/// One reading of a running instance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fresh {
    /// Its cgroup's and volume's figures.
    pub sample: Sample,
    /// Bytes received and sent on its network, if it has one.
    pub counters: Option<(u64, u64)>,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Share of one core since the reading before (or the written status, after a restart).
    pub cpu_percent: f64,
}

impl Fresh {
    /// As a status' usage, with CPU also in DMIPS of a node whose cores have `per_core` each.
    pub fn usage(&self, per_core: u64) -> InstanceUsage {
        let (rx_bytes, tx_bytes) = self.counters.unwrap_or_default();
        InstanceUsage {
            rx_bytes,
            tx_bytes,
            cpu_percent: self.cpu_percent,
            cpu_dmips: (self.cpu_percent / 100.0 * per_core as f64) as u64,
            ram_bytes: self.sample.memory_bytes,
            state_bytes: self.sample.state_bytes,
            storage_bytes: self.sample.storage_bytes,
            updated_at: self.at,
            cpu_time_ns: self.sample.cpu_time_ns,
        }
    }
}

/// The latest reading of each running instance.
#[derive(Default)]
pub struct Sampler {
    latest: Mutex<HashMap<String, Fresh>>,
}

impl Sampler {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fresh>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a new reading of `name` and returns it with its CPU rate: over the time since the
    /// reading before, or since `written` (the status) when there is none.
    pub fn record(
        &self,
        name: &str,
        sample: Sample,
        counters: Option<(u64, u64)>,
        written: Option<&InstanceUsage>,
        now: DateTime<Utc>,
    ) -> Fresh {
        let mut map = self.map();
        let before = map
            .get(name)
            .map(|f| (f.sample.cpu_time_ns, f.at))
            .or_else(|| written.map(|w| (w.cpu_time_ns, w.updated_at)));
        let cpu_percent = match before {
            Some((cpu, at)) if sample.cpu_time_ns >= cpu && now > at => {
                let wall = (now - at).num_nanoseconds().unwrap_or(0).max(1) as f64;
                ((sample.cpu_time_ns - cpu) as f64 / wall * 1000.0).round() / 10.0
            }
            _ => 0.0,
        };
        let fresh = Fresh {
            sample,
            counters,
            at: now,
            cpu_percent,
        };
        map.insert(name.to_string(), fresh);
        fresh
    }

    /// The latest reading of `name` if it was taken after `after` (the written status).
    pub fn latest(&self, name: &str, after: Option<DateTime<Utc>>) -> Option<Fresh> {
        let f = *self.map().get(name)?;
        after.is_none_or(|a| f.at > a).then_some(f)
    }

    /// Forgets the reading of `name` (its task is new: a rate against the old one's CPU time
    /// would mean nothing).
    pub fn forget(&self, name: &str) {
        self.map().remove(name);
    }

    /// Forgets the readings of instances not in `running`.
    pub fn retain(&self, running: &[&str]) {
        self.map().retain(|k, _| running.contains(&k.as_str()));
    }
}

/// Whether `fresh` says what the written `prev` does not: CPU further than `step` points of
/// a core, a byte count further than `step` percent (and 64 KiB), or `prev` older than
/// `refresh`.
pub fn moved(prev: Option<&InstanceUsage>, fresh: &Fresh, step: f64, refresh: Duration) -> bool {
    let Some(p) = prev else { return true };
    if (fresh.at - p.updated_at).to_std().unwrap_or_default() >= refresh {
        return true;
    }
    let far = |now: u64, was: u64| {
        let (now, was) = (now as f64, was as f64);
        (now - was).abs() > (was * step / 100.0).max(64.0 * 1024.0)
    };
    let s = &fresh.sample;
    let (rx, tx) = fresh.counters.unwrap_or((p.rx_bytes, p.tx_bytes));
    (fresh.cpu_percent - p.cpu_percent).abs() > step
        || far(s.memory_bytes, p.ram_bytes)
        || far(s.state_bytes, p.state_bytes)
        || far(s.storage_bytes, p.storage_bytes)
        || far(rx, p.rx_bytes)
        || far(tx, p.tx_bytes)
}

/// Whether the status says the task runs.
fn runs(i: &Object<InstanceSpec>) -> bool {
    i.spec.runtime == RuntimeType::Container
        && i.status.state == InstanceState::Active
        && i.status.pid.is_some()
}

/// Reads one instance now (and keeps the reading).
pub fn read(env: &InstanceEnv, i: &Object<InstanceSpec>) -> Fresh {
    let name = i.name();
    let counters = env
        .networks
        .as_ref()
        .filter(|_| i.spec.network.is_some())
        .and_then(|n| n.counters(name));
    let prev = i.status.usage.as_ref();
    env.usage
        .record(name, env.host.sample(name), counters, prev, Utc::now())
}

/// Fresh readings of the running instances among `instances` (for `aosctl top`), without a
/// status write.
pub fn read_now(env: &InstanceEnv, instances: &[Object<InstanceSpec>]) -> Vec<(String, Fresh)> {
    instances
        .iter()
        .filter(|i| runs(i))
        .map(|i| (i.name().to_string(), read(env, i)))
        .collect()
}

/// One pass: reads every running instance and returns those whose status should be written.
pub fn pass(env: &InstanceEnv, instances: &[Arc<Object<InstanceSpec>>]) -> Vec<String> {
    let running: Vec<&Arc<Object<InstanceSpec>>> = instances.iter().filter(|i| runs(i)).collect();
    let names: Vec<&str> = running.iter().map(|i| i.name()).collect();
    env.usage.retain(&names);
    let d = &env.defaults;
    running
        .into_iter()
        .filter(|i| {
            let fresh = read(env, i);
            moved(
                i.status.usage.as_ref(),
                &fresh,
                d.usage_step,
                d.usage_refresh,
            )
        })
        .map(|i| i.name().to_string())
        .collect()
}

/// Samples every `usage_interval` until `stop`, waking the instances whose usage moved.
pub async fn run(
    env: Arc<InstanceEnv>,
    reader: Reader<InstanceSpec>,
    waker: Waker,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(env.defaults.usage_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let running = reader.list();
        let env = env.clone();
        // cgroup files and volume sizes are blocking reads: off the runtime's threads.
        let Ok(wake) = tokio::task::spawn_blocking(move || pass(&env, &running)).await else {
            continue;
        };
        for name in wake {
            waker.wake(&name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
    }

    fn sample(cpu_s: u64, ram_mib: u64) -> Sample {
        Sample {
            cpu_time_ns: cpu_s * 1_000_000_000,
            memory_bytes: ram_mib << 20,
            state_bytes: 0,
            storage_bytes: 0,
        }
    }

    fn written(f: &Fresh) -> InstanceUsage {
        InstanceUsage {
            cpu_percent: f.cpu_percent,
            ram_bytes: f.sample.memory_bytes,
            state_bytes: f.sample.state_bytes,
            storage_bytes: f.sample.storage_bytes,
            updated_at: f.at,
            cpu_time_ns: f.sample.cpu_time_ns,
            ..Default::default()
        }
    }

    #[test]
    fn the_cpu_rate_is_over_the_time_since_the_reading_before_or_the_written_status() {
        let s = Sampler::default();
        let w = written(&s.record("a", sample(0, 10), None, None, at(0)));
        s.retain(&[]);
        // After a restart: against the status.
        let f = s.record("a", sample(5, 10), None, Some(&w), at(10));
        assert_eq!(f.cpu_percent, 50.0);
        // Then against the reading before, whatever the status says.
        let f = s.record("a", sample(6, 10), None, Some(&w), at(20));
        assert_eq!(f.cpu_percent, 10.0);
        assert_eq!(
            s.latest("a", Some(at(20))),
            None,
            "nothing newer than the status"
        );
        assert_eq!(s.latest("a", Some(at(10))), Some(f));
        // A new task starts from nothing.
        s.forget("a");
        let f = s.record("a", sample(7, 10), None, None, at(30));
        assert_eq!(f.cpu_percent, 0.0);
    }

    #[test]
    fn usage_within_the_step_is_not_written_and_a_move_or_an_old_status_is() {
        let s = Sampler::default();
        let step = 2.0;
        let refresh = Duration::from_secs(300);
        let first = s.record("a", sample(0, 100), None, None, at(0));
        assert!(moved(None, &first, step, refresh), "no status yet");
        let w = written(&first);
        // 1 % of a core and 1 MiB more of 100: within the step.
        let f = s.record("a", sample(0, 101), None, Some(&w), at(10));
        assert!(!moved(Some(&w), &f, step, refresh));
        let f = s.record("a", sample(1, 101), None, Some(&w), at(110));
        assert_eq!(f.cpu_percent, 1.0);
        assert!(!moved(Some(&w), &f, step, refresh));
        // CPU up by 3 points: moved.
        let f = s.record("a", sample(4, 101), None, Some(&w), at(210));
        assert!(moved(Some(&w), &f, step, refresh));
        // RAM up by 3 %: moved.
        let f = s.record("a", sample(4, 103), None, Some(&w), at(220));
        assert!(moved(Some(&w), &f, step, refresh));
        // Nothing moved, but the status is five minutes old.
        let f = s.record("a", sample(4, 100), None, Some(&w), at(300));
        assert!(moved(Some(&w), &f, step, refresh));
    }

    #[test]
    fn small_byte_counts_move_only_by_more_than_64_kib() {
        let s = Sampler::default();
        let refresh = Duration::from_secs(300);
        let w = InstanceUsage {
            updated_at: at(0),
            ..Default::default()
        };
        let mut small = sample(0, 0);
        small.state_bytes = 60 * 1024;
        let f = s.record("a", small, Some((1000, 0)), Some(&w), at(10));
        assert!(!moved(Some(&w), &f, 2.0, refresh));
        let f = s.record("a", small, Some((100 * 1024, 0)), Some(&w), at(20));
        assert!(moved(Some(&w), &f, 2.0, refresh), "100 KiB received");
    }
}
