//! The plan as a table: an Instance's state and what was observed of its task, in; the step,
//! out. No store, no host, no runtime.

use std::collections::HashMap;
use std::sync::Arc;

use aos_api::{InstanceNetwork, InstanceSpec, InstanceState, Object, Probe, Probes, RuntimeType};
use aos_containerd::{ContainersError, TaskInfo, TaskState};
use chrono::{Duration, Utc};

use super::{plan, Step};
use crate::host::{fake::FakeHost, InstanceHost};
use crate::observe::Observed;
use crate::probes::ProbeState;
use crate::recipe::{build, Inputs, NetworkInput, Recipe};
use crate::{Defaults, InstanceError, Permits, CONFIG_LABEL};
use aos_api::itemconfig::{ImageRun, RunConfig};

/// What runs for the instance.
#[derive(Clone, Copy)]
enum Task {
    Nothing,
    /// A container without a task.
    Bare,
    /// A task of the current recipe.
    Current,
    /// A task made from something else.
    Outdated,
    Exited(u32),
    Down,
}

struct Case {
    obj: Object<InstanceSpec>,
    ids: bool,
    task: Task,
    item_ready: bool,
    recipe_fails: bool,
    oom: bool,
    probes: Option<(String, ProbeState)>,
    /// The item's offlineTTL, and how long the cloud has been away (seconds).
    offline_ttl: Option<u64>,
    offline_for: Option<i64>,
}

fn case() -> Case {
    let mut obj = Object::new(
        "web".to_string(),
        InstanceSpec {
            item_id: "svc".into(),
            version: "1.0.0".into(),
            subject_id: "s".into(),
            ..Default::default()
        },
    );
    obj.status.state = InstanceState::Activating;
    Case {
        obj,
        ids: true,
        task: Task::Nothing,
        item_ready: true,
        recipe_fails: false,
        oom: false,
        probes: None,
        offline_ttl: None,
        offline_for: None,
    }
}

fn inputs(c: &Case) -> Inputs {
    Inputs {
        item_name: "svc-1.0.0".into(),
        run: Some(RunConfig {
            image: ImageRun {
                cmd: Some(vec!["/bin/app".into()]),
                ..Default::default()
            },
            item: c.offline_ttl.map(|s| aos_api::ItemConfig {
                offline_ttl: Some(aos_api::AosDuration::from_secs(s)),
                ..Default::default()
            }),
        }),
        layers: vec![],
        node: (10_000, 4),
        granted: if c.recipe_fails {
            Err(InstanceError::ResourceMissing("camera".into()))
        } else {
            Ok(Default::default())
        },
        resolv_conf: "nameserver 10.0.0.1\n".into(),
        network: if c.obj.spec.network.is_some() {
            NetworkInput::Ready {
                resolv_conf: None,
                netns: "/run/netns/web".into(),
            }
        } else {
            NetworkInput::None
        },
        paths: FakeHost::new().paths("web"),
    }
}

const PID: u32 = 4242;

/// The observation and recipe of a case, and the step planned.
fn run(c: &Case) -> (Step, Option<Recipe>) {
    let now = Utc::now();
    let made = c.item_ready.then(|| {
        build(
            &c.obj,
            inputs(c),
            (5000, 5000),
            now,
            &Defaults::default(),
            Permits::default(),
        )
    });
    let hash = match &made {
        Some(Ok(r)) => r.hash.clone(),
        _ => "none".into(),
    };
    let info = |label: &str, task: Option<TaskState>| {
        Some(TaskInfo {
            id: "web".into(),
            labels: HashMap::from([(CONFIG_LABEL.to_string(), label.to_string())]),
            task,
        })
    };
    let running = Some(TaskState {
        pid: PID,
        running: true,
        exit_status: 0,
    });
    let container = match c.task {
        Task::Nothing => Ok(None),
        Task::Bare => Ok(info(&hash, None)),
        Task::Current => Ok(info(&hash, running)),
        Task::Outdated => Ok(info("other", running)),
        Task::Exited(status) => Ok(info(
            &hash,
            Some(TaskState {
                pid: PID,
                running: false,
                exit_status: status,
            }),
        )),
        Task::Down => Err(ContainersError::Unavailable {
            op: "inspect",
            id: "web".into(),
            message: "connection refused".into(),
        }),
    };
    let o = Observed {
        obj: Arc::new(c.obj.clone()),
        now,
        ids: c.ids.then_some((5000, 5000)),
        container,
        item: None,
        inputs: None,
        oom: c.oom,
        probes: c.probes.clone(),
        sample: None,
        offline_since: c.offline_for.map(|s| now - Duration::seconds(s)),
    };
    let step = plan(&o, made.as_ref());
    (step, made.and_then(Result::ok))
}

fn step(c: &Case) -> Step {
    run(c).0
}

fn start(replace: bool, fresh_window: bool) -> Step {
    Step::Start {
        replace,
        fresh_window,
    }
}

fn exit(code: i32, reason: &'static str, status: u32) -> Step {
    Step::RecordExit {
        code: Some(code),
        reason,
        message: format!("exited with status {status}"),
    }
}

#[test]
fn each_state_and_observation_plans_its_one_next_step() {
    let later = Utc::now() + Duration::hours(1);
    let earlier = Utc::now() - Duration::seconds(1);
    type Setup = fn(&mut Case);
    let table: Vec<(&str, Setup, Step)> = vec![
        (
            "another runtime's instance",
            |c| c.obj.spec.runtime = RuntimeType::Boot,
            Step::Unserved,
        ),
        ("no ids yet", |c| c.ids = false, Step::AssignIds),
        (
            "the runtime does not answer",
            |c| c.task = Task::Down,
            Step::RuntimeDown,
        ),
        (
            "the item is not ready",
            |c| c.item_ready = false,
            Step::WaitForItem { running: false },
        ),
        (
            "the item of a new version is not ready, the old task runs",
            |c| {
                c.item_ready = false;
                c.task = Task::Outdated;
            },
            Step::WaitForItem { running: true },
        ),
        (
            "the recipe cannot be made",
            |c| c.recipe_fails = true,
            Step::Blocked { running: false },
        ),
        ("nothing runs", |_| {}, start(false, false)),
        (
            "the task runs as planned",
            |c| c.task = Task::Current,
            Step::Keep { probes: None },
        ),
        (
            "the task is out of date",
            |c| c.task = Task::Outdated,
            start(true, true),
        ),
        (
            "the task completed",
            |c| c.task = Task::Exited(0),
            exit(0, "Completed", 0),
        ),
        (
            "the task failed",
            |c| c.task = Task::Exited(2),
            exit(2, "Error", 2),
        ),
        (
            "the task was killed",
            |c| c.task = Task::Exited(137),
            exit(137, "Killed", 137),
        ),
        (
            "the task hit its memory limit",
            |c| {
                c.task = Task::Exited(137);
                c.oom = true;
            },
            exit(137, "OOMKilled", 137),
        ),
        (
            "the task that ran is gone without a status (its shim died)",
            |c| {
                c.task = Task::Bare;
                c.obj.status.pid = Some(PID);
            },
            Step::RecordExit {
                code: None,
                reason: "TaskLost",
                message:
                    "the task is gone without an exit status (its shim or the runtime ended it)"
                        .into(),
            },
        ),
        (
            "a container without a task",
            |c| c.task = Task::Bare,
            Step::Clear,
        ),
        (
            "failed in this generation",
            |c| c.obj.status.state = InstanceState::Failed,
            Step::Hold,
        ),
        (
            "failed in an older generation",
            |c| {
                c.obj.status.state = InstanceState::Failed;
                c.obj.metadata.generation = 2;
                c.obj.status.failed_generation = 1;
            },
            start(false, true),
        ),
        (
            "a restart that is due",
            |c| c.obj.status.restart_at = Some(Utc::now() - Duration::seconds(1)),
            start(false, false),
        ),
    ];
    for (what, setup, want) in table {
        let mut c = case();
        setup(&mut c);
        assert_eq!(step(&c), want, "{what}");
    }
    let mut c = case();
    c.obj.status.restart_at = Some(later);
    assert_eq!(step(&c), Step::WaitRestart(later), "a restart to come");
    c.obj.status.restart_at = Some(earlier);
    c.task = Task::Current;
    assert_eq!(
        step(&c),
        Step::Keep { probes: None },
        "a running task wins over a stale restart time"
    );
}

fn with_probes(c: &mut Case) {
    c.obj.spec.probes = Some(Probes {
        liveness: Some(Probe::default()),
        ..Default::default()
    });
    c.task = Task::Current;
}

fn failed(why: &str) -> ProbeState {
    ProbeState {
        started: true,
        failed: Some(why.into()),
        ..Default::default()
    }
}

#[test]
fn probes_run_for_the_task_and_their_verdict_stops_it() {
    let mut c = case();
    with_probes(&mut c);
    let Step::Keep {
        probes: Some((key, target)),
    } = step(&c)
    else {
        panic!("probes are started for a running task");
    };
    assert!(key.contains(&PID.to_string()), "{key}");
    assert_eq!(
        target.netns.as_deref(),
        Some(std::path::Path::new("/proc/4242/ns/net")),
        "an isolated instance is probed from its own namespace"
    );
    assert_eq!((target.uid, target.gid), (5000, 5000));

    for (why, reason) in [
        ("startup probe failed 3 times", "StartupProbeFailed"),
        ("liveness probe failed 3 times", "LivenessProbeFailed"),
    ] {
        c.probes = Some((key.clone(), failed(why)));
        assert_eq!(
            step(&c),
            Step::ProbeFailed {
                reason,
                message: why.into()
            }
        );
    }
    // A verdict on an earlier task (another key) does not stop this one.
    c.probes = Some(("old-task".into(), failed("liveness probe failed")));
    assert!(matches!(step(&c), Step::Keep { probes: Some(_) }));
}

#[test]
fn an_instance_on_a_network_is_probed_at_its_address_from_aosd() {
    let mut c = case();
    with_probes(&mut c);
    c.obj.spec.network = Some(InstanceNetwork {
        network_id: "net".into(),
        ..Default::default()
    });
    c.obj.status.ip = Some("172.18.0.5".into());
    let Step::Keep {
        probes: Some((_, target)),
    } = step(&c)
    else {
        panic!("probes run");
    };
    assert_eq!(target.host, "172.18.0.5");
    assert_eq!(target.netns, None);
}

#[test]
fn the_recipe_names_what_it_is_made_of_and_changes_with_the_instance() {
    let c = case();
    let (_, r) = run(&c);
    let r = r.expect("a recipe");
    assert_eq!(r.top.hostname, "web");
    assert_eq!(r.top.resolv_conf, "nameserver 10.0.0.1\n");
    assert!(r.env.iter().any(|e| e == "AOS_ITEM_ID=svc"), "{:?}", r.env);
    assert_eq!(r.volume, Some(Defaults::default().volume_size));
    let mut other = case();
    other.obj.spec.env.push(aos_api::EnvVar {
        name: "MODE".into(),
        value: "fast".into(),
        ttl: None,
    });
    let (_, r2) = run(&other);
    assert_ne!(
        r.hash,
        r2.expect("a recipe").hash,
        "an env change re-makes the task"
    );
}

#[test]
fn a_cloud_away_longer_than_the_offline_ttl_stops_the_task_and_starts_nothing() {
    let mut c = case();
    c.task = Task::Current;
    c.offline_ttl = Some(60);
    c.offline_for = Some(61);
    assert_eq!(step(&c), Step::Offline { running: true });
    c.task = Task::Nothing;
    assert_eq!(step(&c), Step::Offline { running: false });
}

#[test]
fn within_the_offline_ttl_or_with_the_cloud_there_the_task_runs_on() {
    let mut c = case();
    c.task = Task::Current;
    c.offline_ttl = Some(60);
    c.offline_for = Some(30);
    assert_eq!(step(&c), Step::Keep { probes: None });
    c.offline_for = None;
    assert_eq!(step(&c), Step::Keep { probes: None });
    // An item without offlineTTL runs however long the cloud is away.
    c.offline_ttl = None;
    c.offline_for = Some(86_400 * 365);
    assert_eq!(step(&c), Step::Keep { probes: None });
    c.task = Task::Nothing;
    assert_eq!(step(&c), start(false, false));
}
