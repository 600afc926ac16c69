//! The one next step of an Instance, decided from what was observed and the recipe of its
//! task, without any I/O: serve or refuse its runtime, give it ids, wait for its Item, keep a
//! task that runs as the recipe says (and its probes), replace one that is out of date, count
//! an exit or a probe's verdict, hold a failed instance, wait for a restart, or start.

use aos_api::condition::reason as r;
use aos_api::{InstanceState, RuntimeType};
use aos_reconcile::Reason;
use chrono::{DateTime, Utc};

use crate::observe::Observed;
use crate::probes::Target;
use crate::recipe::Recipe;
use crate::spec::NetNs;
use crate::{InstanceError, CONFIG_LABEL};

/// What a reconcile does next.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// The instance is of a runtime this node does not serve.
    Unserved,
    /// Give it its uid and gid (recorded before anything runs as them).
    AssignIds,
    /// The container runtime does not answer: nothing is known of the task.
    RuntimeDown,
    /// Its Item (of its version) is not Ready; `running`: an older task keeps running.
    WaitForItem { running: bool },
    /// The recipe cannot be made (the error says why); `running`: a task keeps running.
    Blocked { running: bool },
    /// The task runs as the recipe says; its probes (when it has any) run for it.
    Keep { probes: Option<(String, Target)> },
    /// A probe gave up on the running task: stop it and count the stop.
    ProbeFailed {
        reason: &'static str,
        message: String,
    },
    /// The task stopped: remove it and count the exit (`code`: `None` when the task is gone
    /// without a status, as when its shim died).
    RecordExit {
        code: Option<i32>,
        reason: &'static str,
        message: String,
    },
    /// A container was left without a task: remove it, then look again.
    Clear,
    /// Failed in this generation: nothing to do until the instance changes.
    Hold,
    /// Restarts at this time.
    WaitRestart(DateTime<Utc>),
    /// The cloud has been away longer than the item's `offlineTTL`: stop the task (`running`)
    /// and wait for the cloud.
    Offline { running: bool },
    /// Start a task: `replace`: stop the running one (out of date) first; `fresh_window`: the
    /// start burst counts from zero.
    Start { replace: bool, fresh_window: bool },
}

/// The key the probes of a task run under: a new task (or a change of the probes) restarts them.
fn probe_key(o: &Observed, r: &Recipe, pid: u32) -> String {
    format!(
        "{}:{}:{}",
        r.hash,
        pid,
        serde_json::to_string(&o.obj.spec.probes).unwrap_or_default()
    )
}

fn reason_of_exit(status: u32, oom: bool) -> &'static str {
    if oom {
        r::OOM_KILLED
    } else if status == 0 {
        r::COMPLETED
    } else if status >= 128 {
        r::KILLED
    } else {
        r::ERROR
    }
}

/// The next step for `o`, whose recipe (once its Item is Ready) is `recipe`.
pub fn plan(o: &Observed, recipe: Option<&Result<Recipe, InstanceError>>) -> Step {
    let obj = &o.obj;
    if obj.spec.runtime != RuntimeType::Container {
        return Step::Unserved;
    }
    if o.ids.is_none() {
        return Step::AssignIds;
    }
    let container = match &o.container {
        Ok(c) => c.as_ref(),
        Err(_) => return Step::RuntimeDown,
    };
    let running = o.running();
    let r = match recipe {
        None => {
            return Step::WaitForItem {
                running: running.is_some(),
            }
        }
        Some(Err(_)) => {
            return Step::Blocked {
                running: running.is_some(),
            }
        }
        Some(Ok(r)) => r,
    };
    if offline_until(o, r).is_some_and(|at| at <= o.now) {
        return Step::Offline {
            running: container.is_some(),
        };
    }
    let mut replace = false;
    if let Some(c) = container {
        match c.task {
            Some(t) if t.running => {
                if c.labels.get(CONFIG_LABEL) != Some(&r.hash) {
                    replace = true;
                } else if obj.spec.probes.is_some() {
                    let key = probe_key(o, r, t.pid);
                    if let Some((k, st)) = &o.probes {
                        if *k == key {
                            if let Some(why) = &st.failed {
                                return Step::ProbeFailed {
                                    reason: if why.starts_with("startup") {
                                        r::STARTUP_PROBE_FAILED
                                    } else {
                                        r::LIVENESS_PROBE_FAILED
                                    },
                                    message: why.clone(),
                                };
                            }
                        }
                    }
                    let target = Target {
                        host: obj.status.ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
                        // Isolated instances are probed from inside their namespace.
                        netns: (r.netns == NetNs::Own)
                            .then(|| format!("/proc/{}/ns/net", t.pid).into()),
                        uid: r.uid,
                        gid: r.gid,
                        env: r.env.clone(),
                    };
                    return Step::Keep {
                        probes: Some((key, target)),
                    };
                } else {
                    return Step::Keep { probes: None };
                }
            }
            Some(t) => {
                return Step::RecordExit {
                    code: Some((t.exit_status & 0xff) as i32),
                    reason: reason_of_exit(t.exit_status, o.oom),
                    message: format!("exited with status {}", t.exit_status),
                }
            }
            // The task ran (its pid is in status) and is gone with its status: its shim
            // died and containerd cleaned it up. An exit like any other.
            None if obj.status.pid.is_some() => {
                return Step::RecordExit {
                    code: None,
                    reason: r::TASK_LOST,
                    message:
                        "the task is gone without an exit status (its shim or the runtime ended it)"
                            .into(),
                }
            }
            None => return Step::Clear,
        }
    }
    if replace {
        return Step::Start {
            replace,
            fresh_window: true,
        };
    }
    let st = &obj.status;
    if st.state == InstanceState::Failed && st.failed_generation == obj.metadata.generation {
        return Step::Hold;
    }
    if st.state != InstanceState::Failed {
        if let Some(at) = st.restart_at.filter(|at| *at > o.now) {
            return Step::WaitRestart(at);
        }
    }
    Step::Start {
        replace,
        fresh_window: st.state == InstanceState::Failed,
    }
}

/// When the item's `offlineTTL` runs out with the cloud away (`None`: it does not, the cloud
/// is there, or the item has none).
pub fn offline_until(o: &Observed, r: &Recipe) -> Option<DateTime<Utc>> {
    let ttl = chrono::Duration::from_std(r.offline_ttl?).unwrap_or(chrono::Duration::MAX);
    o.offline_since?.checked_add_signed(ttl)
}

/// The reason and message of a recipe that cannot be made.
pub fn blocked_by(e: &InstanceError) -> (&'static str, String) {
    (e.reason(), e.to_string())
}

#[cfg(test)]
mod tests;
