//! The only place an Instance's status and conditions are written: once per reconcile, from
//! what was observed, the step and what came of it; and the action that says when to look
//! again.

use std::time::Duration;

use aos_api::condition::{self as c, reason as r};
use aos_api::{ConditionStatus, InstanceSpec, InstanceState, InstanceStatus, LastExit, Spec as _};
use aos_reconcile::Action;
use aos_store::Api;
use chrono::{DateTime, Utc};

use crate::act::Outcome;
use crate::observe::Observed;
use crate::plan::Step;
use crate::recipe::Recipe;
use crate::InstanceError;

mod usage;

fn cond(s: &mut InstanceStatus, t: &str, ok: bool, reason: &str, msg: &str, now: DateTime<Utc>) {
    let st = if ok {
        ConditionStatus::True
    } else {
        ConditionStatus::False
    };
    s.common.set_condition(t, st, reason, msg, now);
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    at.signed_duration_since(now)
        .to_std()
        .unwrap_or_default()
        .max(Duration::from_millis(10))
}

/// When a running task is looked at again: when an environment override expires (the task is
/// then re-made without it); else when something wakes it (its task's events, its probes, the
/// usage sampler) or at the resync.
fn next_look(recipe: &Recipe, now: DateTime<Utc>) -> Action {
    match recipe.next_env_expiry {
        Some(t) => Action::Requeue(until(t, now)),
        None => Action::AwaitChange,
    }
}

/// Everything a report needs besides the status it writes.
pub struct Report<'a> {
    pub o: &'a Observed,
    pub recipe: Option<&'a Recipe>,
    /// Why the recipe could not be made.
    pub blocked: Option<(&'static str, String)>,
    pub step: &'a Step,
    pub outcome: &'a Outcome,
    /// How long the step took (a start's `start` phase).
    pub took: std::time::Duration,
    /// Where the `start` and `ready` phases are timed.
    pub metrics: &'a aos_reconcile::ControllerMetrics,
}

/// Writes the status `rep` calls for (at most once) and returns when to look again.
pub async fn report(api: &Api<InstanceSpec>, rep: Report<'_>) -> Result<Action, InstanceError> {
    let o = rep.o;
    let name = o.obj.name();
    let now = Utc::now();
    match (rep.step, rep.outcome, rep.recipe) {
        (Step::Unserved, ..) => {
            let msg = format!(
                "this node runs no {} instances (it serves: container; boot and rootfs components are installed through the node's BootSlot and RootfsSlot)",
                o.obj.spec.runtime.as_str()
            );
            api.update_status(name, |s| {
                s.state = InstanceState::Failed;
                cond(s, c::READY, false, r::RUNTIME_UNAVAILABLE, &msg, now);
            })
            .await?;
            Ok(Action::AwaitChange)
        }
        (Step::AssignIds, Outcome::IdsAssigned { uid }, _) => {
            let sp = &o.obj.spec;
            let id = aos_api::ids::instance_id(&sp.item_id, &sp.subject_id, sp.index).to_string();
            api.update_status(name, |s| {
                s.uid = Some(*uid);
                s.gid = Some(*uid);
                s.instance_id = id.clone();
            })
            .await?;
            Ok(Action::Requeue(Duration::ZERO))
        }
        (Step::RuntimeDown, ..) => {
            // Nothing is known of the task while the runtime is away: not Ready, not failed.
            let msg = o.container.as_ref().err().map(|e| e.to_string());
            let msg = msg.unwrap_or_default();
            api.update_status(name, |s| {
                s.common.set_condition(
                    c::READY,
                    ConditionStatus::Unknown,
                    r::RUNTIME_UNAVAILABLE,
                    &msg,
                    now,
                );
            })
            .await?;
            Ok(Action::AwaitChange)
        }
        (Step::WaitForItem { running }, ..) => {
            let sp = &o.obj.spec;
            let msg = format!(
                "waiting for Item {} version {} to be Ready{}",
                sp.item_id,
                sp.version,
                match &o.obj.status.running_version {
                    Some(v) if *running => format!("; version {v} keeps running"),
                    _ => String::new(),
                }
            );
            api.update_status(name, |s| {
                cond(s, c::ITEM_READY, false, r::WAITING_FOR_ITEM, &msg, now);
                if !running && s.state != InstanceState::Failed {
                    s.state = InstanceState::Activating;
                }
            })
            .await?;
            Ok(Action::AwaitChange)
        }
        (Step::Blocked { running }, ..) => {
            let (reason, msg) = rep.blocked.clone().unwrap_or(("Blocked", String::new()));
            api.update_status(name, |s| {
                cond(s, c::RUNNING, *running, reason, &msg, now);
            })
            .await?;
            Ok(Action::AwaitChange)
        }
        (Step::Offline { .. }, ..) => {
            let since = o.offline_since.map_or_else(String::new, |t| t.to_rfc3339());
            let msg = format!(
                "the cloud has been away since {since}, longer than the item's offlineTTL; the instance starts when it is back"
            );
            api.update_status(name, |s| {
                s.state = InstanceState::Inactive;
                s.pid = None;
                cond(s, c::RUNNING, false, r::OFFLINE_TTL_EXPIRED, &msg, now);
                cond(s, c::READY, false, r::OFFLINE_TTL_EXPIRED, &msg, now);
            })
            .await?;
            Ok(Action::AwaitChange)
        }
        (Step::Clear, ..) => Ok(Action::Requeue(Duration::ZERO)),
        (Step::Hold, ..) => Ok(Action::AwaitChange),
        (Step::WaitRestart(at), ..) => Ok(Action::Requeue(until(*at, o.now))),
        (Step::Keep { .. }, Outcome::Running { probes, ip }, Some(recipe)) => {
            let u = usage::sample(o, recipe);
            let ready = usage::readiness(o.obj.spec.probes.is_some(), probes.as_ref());
            let pid = o.running().map(|t| t.pid);
            // Ready for the first time since the start: the `ready` phase (probes passing).
            let became_ready = ready.0
                && !o
                    .obj
                    .status
                    .common
                    .condition(c::READY)
                    .is_some_and(|c| c.status == ConditionStatus::True);
            let ready_took = o
                .obj
                .status
                .started_at
                .filter(|_| became_ready)
                .and_then(|t| (now - t).to_std().ok());
            if let Some(took) = ready_took {
                rep.metrics.phase(InstanceSpec::KIND, "ready", took);
            }
            api.update_status(name, |s| {
                if let Some(took) = ready_took {
                    s.phase_millis
                        .insert("ready".into(), took.as_millis() as u64);
                }
                s.state = InstanceState::Active;
                s.ip = ip.clone();
                s.started_at = s.started_at.or(Some(now));
                if s.window_start.is_none() {
                    s.window_start = Some(now);
                    s.window_starts = s.window_starts.max(1);
                }
                s.pid = pid;
                s.running_version = Some(o.obj.spec.version.clone());
                s.restart_at = None;
                s.layers = recipe.layers.iter().map(|(n, _, _)| n.clone()).collect();
                s.env = recipe.env_status.clone();
                cond(s, c::RUNNING, true, r::STARTED, "", now);
                cond(s, c::ITEM_READY, true, r::ITEM_IS_READY, "", now);
                cond(s, c::READY, ready.0, ready.1, &ready.2, now);
                if let Some(u) = &u {
                    usage::limits(s, u, &recipe.quotas, now);
                    s.usage = Some(u.clone());
                }
            })
            .await?;
            Ok(next_look(recipe, now))
        }
        (
            Step::ProbeFailed { reason, message }
            | Step::RecordExit {
                reason, message, ..
            },
            Outcome::Stopped,
            Some(recipe),
        ) => {
            let code = match rep.step {
                Step::RecordExit { code, .. } => *code,
                _ => None,
            };
            stopped(api, o, recipe, (code, *reason, message.as_str()), None).await
        }
        (Step::Start { fresh_window, .. }, outcome, Some(recipe)) => {
            let fresh = *fresh_window;
            let policy = &recipe.policy;
            // The window as of the latest status, with this start counted.
            let window = move |s: &InstanceStatus| {
                if fresh {
                    policy.record_start(None, 0, now)
                } else {
                    policy.record_start(s.window_start, s.window_starts, now)
                }
            };
            match outcome {
                Outcome::Started { pid, ip } => {
                    let has_probes = o.obj.spec.probes.is_some();
                    rep.metrics.phase(InstanceSpec::KIND, "start", rep.took);
                    if !has_probes {
                        rep.metrics
                            .phase(InstanceSpec::KIND, "ready", Duration::ZERO);
                    }
                    api.update_status(name, |s| {
                        s.phase_millis = [("start".to_string(), rep.took.as_millis() as u64)]
                            .into_iter()
                            .chain((!has_probes).then(|| ("ready".to_string(), 0)))
                            .collect();
                        s.state = InstanceState::Active;
                        s.pid = Some(*pid);
                        s.started_at = Some(now);
                        s.running_version = Some(o.obj.spec.version.clone());
                        s.ip = ip.clone();
                        (s.window_start, s.window_starts) = {
                            let (w, n) = window(s);
                            (Some(w), n)
                        };
                        s.restart_at = None;
                        s.failed_generation = 0;
                        s.layers = recipe.layers.iter().map(|(n, _, _)| n.clone()).collect();
                        s.env = recipe.env_status.clone();
                        s.usage = None;
                        cond(s, c::RUNNING, true, r::STARTED, "", now);
                        cond(s, c::ITEM_READY, true, r::ITEM_IS_READY, "", now);
                        if has_probes {
                            let msg = "waiting for the probes";
                            cond(s, c::READY, false, r::PROBES_PENDING, msg, now);
                        } else {
                            cond(s, c::READY, true, r::TASK_RUNNING, "", now);
                        }
                    })
                    .await?;
                    Ok(next_look(recipe, now))
                }
                Outcome::StartFailed { reason, message } => {
                    let stop = (None, *reason, message.as_str());
                    stopped(api, o, recipe, stop, Some(&window)).await
                }
                Outcome::NotStarted(e) => {
                    use aos_reconcile::Reason;
                    let (reason, msg) = (e.reason(), e.to_string());
                    api.update_status(name, |s| {
                        if s.state != InstanceState::Failed {
                            s.state = InstanceState::Activating;
                        }
                        s.pid = None;
                        cond(s, c::RUNNING, false, reason, &msg, now);
                    })
                    .await?;
                    Ok(Action::AwaitChange)
                }
                _ => Ok(Action::AwaitChange),
            }
        }
        // A step without its outcome (or recipe) writes nothing: there is nothing to say.
        _ => Ok(Action::AwaitChange),
    }
}

type Window<'a> = &'a (dyn Fn(&InstanceStatus) -> (DateTime<Utc>, u32) + Send + Sync);

/// Records a stopped task (an exit, a failed start or a probe's verdict) and schedules the
/// restart, or fails the instance when the burst is spent. `window`: the start window with
/// this attempt counted, when the stop was a failed start.
async fn stopped(
    api: &Api<InstanceSpec>,
    o: &Observed,
    recipe: &Recipe,
    (exit_code, reason, message): (Option<i32>, &str, &str),
    window: Option<Window<'_>>,
) -> Result<Action, InstanceError> {
    let now = Utc::now();
    let p = &recipe.policy;
    let generation = o.obj.metadata.generation;
    let restart_at = now + chrono::Duration::from_std(p.restart_interval).unwrap_or_default();
    let mut exhausted = false;
    api.update_status(o.obj.name(), |s| {
        let (w, n) = match window {
            Some(f) => f(s),
            None => (s.window_start.unwrap_or(now), s.window_starts),
        };
        exhausted = p.exhausted(Some(w), n, now);
        s.last_exit = Some(LastExit {
            exit_code,
            reason: reason.to_string(),
            at: now,
        });
        s.pid = None;
        s.window_start = Some(w);
        s.window_starts = n;
        cond(s, c::READY, false, reason, message, now);
        if exhausted {
            s.state = InstanceState::Failed;
            s.failed_generation = generation;
            s.restart_at = None;
            let m = format!(
                "{n} starts within {} s; last: {reason} {message}",
                p.start_interval.as_secs()
            );
            cond(s, c::RUNNING, false, r::CRASH_LOOP, m.trim(), now);
        } else {
            s.state = InstanceState::Activating;
            s.restart_at = Some(restart_at);
            s.restarts += 1;
            cond(s, c::RUNNING, false, r::RESTARTING, message, now);
        }
    })
    .await?;
    tracing::info!(?exit_code, reason, exhausted, "task stopped");
    Ok(if exhausted {
        Action::AwaitChange
    } else {
        Action::Requeue(p.restart_interval)
    })
}

/// Deletion has begun: the instance is no longer active.
pub async fn removing(api: &Api<InstanceSpec>, name: &str) {
    let _ = api
        .update_status(name, |s| s.state = InstanceState::Inactive)
        .await;
}

/// The instance left its network: its address goes (the network side follows addresses).
pub async fn left_network(api: &Api<InstanceSpec>, name: &str) {
    let _ = api.update_status(name, |s| s.ip = None).await;
}
