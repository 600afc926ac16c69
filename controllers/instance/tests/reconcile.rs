//! The Instance reconciler on fakes (in-memory store, FakeContainers, FakeNetworks, FakeHost):
//! start, restart policy and crash loop, adoption, version update, deletion, a runtime that
//! goes away. No root, no containerd.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod rig;

use std::time::Duration;

use aos_api::{AosDuration, InstanceState, ItemConfig, RestartPolicy};
use aos_reconcile::Action;
use rig::{condition, diff, spec, Rig};

#[tokio::test]
async fn an_instance_starts_once_its_item_is_ready_and_says_so() {
    let rig = Rig::new();
    rig.item("1.0.0", false, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    assert_eq!(rig.settle().await.unwrap(), Action::AwaitChange);
    let s = rig.status().await;
    assert_eq!(s.state, InstanceState::Activating);
    assert_eq!(condition(&s, "ItemReady").1, "WaitingForItem");
    assert_eq!(
        s.uid,
        Some(5000),
        "ids come first, before anything runs as them"
    );
    assert_eq!(rig.runs(), 0);

    rig.item("1.0.0", true, ItemConfig::default()).await;
    // Running, it waits for its task's events, its probes or the usage sampler.
    assert_eq!(rig.settle().await.unwrap(), Action::AwaitChange);
    let s = rig.status().await;
    assert_eq!(s.state, InstanceState::Active);
    assert!(s.pid.is_some());
    assert_eq!(s.running_version.as_deref(), Some("1.0.0"));
    assert_eq!(s.layers, ["layer-1.0.0"]);
    assert_eq!(condition(&s, "Ready").0, "True");
    assert_eq!(condition(&s, "Running").1, "Started");
    let p = rig
        .host
        .prepared("web")
        .expect("the host prepared the task");
    assert_eq!((p.uid, p.gid, p.layers), (5000, 5000, vec![diff("1.0.0")]));
    assert_eq!(p.hostname, "web");

    // Nothing changed: the next pass keeps the task.
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 1);
}

/// The restart interval of the crash-loop test: long enough that two passes in a row fall
/// inside it on a loaded CI machine (20 ms did not: CI of 9f6b732 failed on it).
const INTERVAL: Duration = Duration::from_secs(1);

fn burst(n: u32) -> RestartPolicy {
    RestartPolicy {
        restart_interval: Some(AosDuration(INTERVAL)),
        start_burst: Some(n),
        start_interval: Some(AosDuration(Duration::from_secs(3600))),
        stop_grace: None,
    }
}

#[tokio::test]
async fn a_crashing_task_restarts_after_its_interval_until_the_burst_is_spent() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    let mut s = spec("1.0.0");
    s.restart_policy = Some(burst(2));
    rig.instance(s.clone()).await;
    rig.settle().await.unwrap();

    rig.containers.exit("web", 1);
    let action = rig.settle().await.unwrap();
    assert_eq!(action, Action::Requeue(INTERVAL));
    let st = rig.status().await;
    assert_eq!(st.state, InstanceState::Activating);
    let exit = st.last_exit.clone().unwrap();
    assert_eq!((exit.exit_code, exit.reason.as_str()), (Some(1), "Error"));
    assert_eq!(st.restarts, 1);
    assert_eq!(condition(&st, "Running").1, "Restarting");
    // Before the interval has passed nothing starts.
    assert!(matches!(rig.settle().await.unwrap(), Action::Requeue(_)));
    assert_eq!(rig.runs(), 1);

    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 2);
    assert_eq!(rig.status().await.window_starts, 2);

    rig.containers.exit("web", 1);
    assert_eq!(rig.settle().await.unwrap(), Action::AwaitChange);
    let st = rig.status().await;
    assert_eq!(st.state, InstanceState::Failed);
    assert_eq!(condition(&st, "Running").1, "CrashLoop");
    tokio::time::sleep(INTERVAL + Duration::from_millis(50)).await;
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 2, "a failed instance stays failed");

    // A change of the instance gives it a fresh burst.
    s.restart_policy = Some(burst(3));
    rig.instance(s).await;
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 3);
    let st = rig.status().await;
    assert_eq!((st.state, st.window_starts), (InstanceState::Active, 1));
}

#[tokio::test]
async fn an_oom_kill_and_a_completed_task_are_told_apart() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();
    rig.host.set_oom_kills("web", 1);
    rig.containers.exit("web", 137);
    rig.settle().await.unwrap();
    let exit = rig.status().await.last_exit.unwrap();
    assert_eq!(
        (exit.exit_code, exit.reason.as_str()),
        (Some(137), "OOMKilled")
    );

    tokio::time::sleep(Duration::from_millis(30)).await;
    rig.host.set_oom_kills("web", 0);
    rig.settle().await.unwrap();
    rig.containers.exit("web", 0);
    rig.settle().await.unwrap();
    let exit = rig.status().await.last_exit.unwrap();
    assert_eq!(
        (exit.exit_code, exit.reason.as_str()),
        (Some(0), "Completed")
    );
}

#[tokio::test]
async fn a_running_task_is_adopted_by_a_restarted_node_and_its_status_filled_in() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();
    let pid = rig.status().await.pid;
    // aosd died between the start and the status write.
    rig.api
        .update_status("web", |s| {
            s.pid = None;
            s.running_version = None;
            s.state = InstanceState::Activating;
        })
        .await
        .unwrap();
    let again = Rig::on(
        rig.backend.clone(),
        rig.containers.clone(),
        rig.host.clone(),
    );
    again.settle().await.unwrap();
    assert_eq!(rig.runs(), 1, "the running task is kept");
    let s = again.status().await;
    assert_eq!((s.state, s.pid), (InstanceState::Active, pid));
    assert_eq!(s.running_version.as_deref(), Some("1.0.0"));
}

#[tokio::test]
async fn a_new_version_replaces_the_task_once_its_item_is_ready() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();

    rig.item("2.0.0", false, ItemConfig::default()).await;
    rig.instance(spec("2.0.0")).await;
    rig.settle().await.unwrap();
    let s = rig.status().await;
    assert_eq!(
        s.state,
        InstanceState::Active,
        "the old version keeps running"
    );
    let (_, reason, msg) = condition(&s, "ItemReady");
    assert_eq!(reason, "WaitingForItem");
    assert!(msg.contains("version 1.0.0 keeps running"), "{msg}");
    assert_eq!(rig.runs(), 1);

    rig.item("2.0.0", true, ItemConfig::default()).await;
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 2);
    let calls = rig.containers.calls();
    let kill = calls.iter().position(|c| c == "kill web").expect("a kill");
    let run = calls.iter().rposition(|c| c == "run web").unwrap();
    assert!(kill < run, "stopped before the new task: {calls:?}");
    let s = rig.status().await;
    assert_eq!(s.running_version.as_deref(), Some("2.0.0"));
    assert_eq!(s.window_starts, 1, "a replacement starts a fresh burst");
}

/// A rig with its network and a ready item, and the spec of an instance on that network.
async fn on_network() -> (Rig, aos_api::InstanceSpec) {
    let rig = Rig::new();
    rig.network().await;
    rig.item("1.0.0", true, ItemConfig::default()).await;
    let mut s = spec("1.0.0");
    s.network = Some(aos_api::InstanceNetwork {
        network_id: "net".into(),
        ..Default::default()
    });
    (rig, s)
}

#[tokio::test]
async fn deleting_an_instance_stops_its_task_and_removes_what_it_had() {
    let (rig, s) = on_network().await;
    rig.instance(s).await;
    rig.settle().await.unwrap();
    assert!(rig.networks.attachment("web").is_some());
    let st = rig.status().await;
    assert!(st.ip.is_some());
    let prepared = rig.host.prepared("web").unwrap();
    assert_eq!(prepared.resolv_conf, "nameserver 172.18.0.1\n");
    assert!(
        prepared.hosts.iter().any(|h| h.ends_with("\tweb")),
        "{:?}",
        prepared.hosts
    );

    rig.delete().await.unwrap();
    assert!(rig.containers.calls().contains(&"remove web".to_string()));
    assert!(rig.networks.attachment("web").is_none(), "detached");
    assert!(rig.host.calls().contains(&"remove web".to_string()));
    assert!(rig.host.prepared("web").is_none());
    let st = rig.status().await;
    assert_eq!((st.state, st.ip), (InstanceState::Inactive, None));
    // Its uid is free again.
    rig.api.delete("web").await.unwrap();
    let api = aos_store::Api::<aos_api::InstanceSpec>::new(rig.backend.clone());
    let _ = api.get_opt("web").await;
    assert_eq!(rig.env.uids.allocate(&api).await.unwrap(), 5000);
}

#[tokio::test]
async fn while_the_runtime_is_away_an_instance_is_not_ready_but_not_failed() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();
    rig.containers.set_down(true);
    let e = rig.settle().await.unwrap_err();
    assert!(e.to_string().contains("does not answer"), "{e}");
    let s = rig.status().await;
    assert_eq!(s.state, InstanceState::Active);
    let (st, reason, _) = condition(&s, "Ready");
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("Unknown", "RuntimeUnavailable")
    );
    rig.containers.set_down(false);
    rig.settle().await.unwrap();
    assert_eq!(condition(&rig.status().await, "Ready").0, "True");
    assert_eq!(rig.runs(), 1, "the task outlived the runtime's absence");
}

#[tokio::test]
async fn an_instance_placed_on_another_node_is_removed_here_and_its_status_left_alone() {
    let (rig, mut s) = on_network().await;
    rig.instance(s.clone()).await;
    rig.settle().await.unwrap();
    assert_eq!(rig.runs(), 1);
    let before = rig.status().await;

    // Placement moved it to node "b": this node (the rig's, not in a unit) lets go of it.
    s.node_name = Some("b".into());
    rig.instance(s).await;
    assert_eq!(rig.let_go().await.unwrap(), Action::AwaitChange);
    assert!(rig.containers.calls().contains(&"remove web".to_string()));
    assert!(rig.networks.attachment("web").is_none(), "detached");
    assert!(rig.host.calls().contains(&"remove web".to_string()));
    assert_eq!(
        rig.status().await,
        before,
        "the status is the new owner's to write"
    );
    // Nothing is left, so letting go again does nothing.
    let calls = rig.containers.calls().len();
    rig.let_go().await.unwrap();
    assert_eq!(rig.containers.calls().len(), calls + 1, "one look, no more");
}

#[test]
fn a_node_owns_its_instances_and_on_its_own_those_without_a_node() {
    use aos_instance_controller::Owner;
    let on = |n: Option<&str>| aos_api::InstanceSpec {
        node_name: n.map(str::to_string),
        ..spec("1")
    };
    let alone = Owner {
        node: "a".into(),
        unit: false,
    };
    let in_unit = Owner {
        node: "a".into(),
        unit: true,
    };
    assert!(alone.owns(&on(None)) && alone.owns(&on(Some("a"))) && !alone.owns(&on(Some("b"))));
    assert!(!in_unit.owns(&on(None)), "in a unit it waits for placement");
    assert!(in_unit.owns(&on(Some("a"))) && !in_unit.owns(&on(Some("b"))));
}

#[tokio::test]
async fn a_container_whose_instance_is_gone_is_swept_and_one_whose_instance_exists_is_kept() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();
    let swept = aos_instance_controller::sweep_orphans(&rig.env, rig.backend.clone());
    assert_eq!(swept.await.unwrap(), 0, "its Instance is there");
    // Deleted elsewhere (say by the node it moved to) while nothing here was told.
    rig.api.delete("web").await.unwrap();
    let swept = aos_instance_controller::sweep_orphans(&rig.env, rig.backend.clone());
    assert_eq!(swept.await.unwrap(), 1);
    assert!(rig.containers.calls().contains(&"remove web".to_string()));
}
