//! The Instance reconciler on fakes, for what it checks while a task runs or before it starts:
//! exec probes gate Ready and a failed liveness probe restarts the task; usage samples and the
//! limits they exceed; a network that refuses the instance and a mode the node does not
//! permit, each said in the instance's conditions. No root, no containerd.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod rig;

use std::time::Duration;

use aos_api::itemconfig::Quotas;
use aos_api::{AosDuration, ExecProbe, InstanceNetwork, InstanceState, ItemConfig, Probe, Probes};
use aos_instance_controller::host::Sample;
use aos_reconcile::Action;
use rig::{condition, spec, Rig};

fn exec(code: u32, period_ms: u64, threshold: u32) -> Probe {
    Probe {
        exec: Some(ExecProbe {
            command: vec!["exit".into(), code.to_string()],
        }),
        period: Some(AosDuration(Duration::from_millis(period_ms))),
        failure_threshold: Some(threshold),
        ..Default::default()
    }
}

/// Passes until `f` holds of the status (the probes run on their own clock).
async fn until(rig: &Rig, what: &str, f: impl Fn(&aos_api::InstanceStatus) -> bool) {
    for _ in 0..200 {
        let _ = rig.settle().await;
        if f(&rig.status().await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never: {what}; status: {:?}", rig.status().await);
}

#[tokio::test]
async fn exec_probes_gate_ready_and_a_failed_liveness_probe_restarts_the_task() {
    let rig = Rig::new();
    rig.item("1.0.0", true, ItemConfig::default()).await;
    let mut s = spec("1.0.0");
    let mut liveness = exec(1, 10, 2);
    liveness.initial_delay = Some(AosDuration(Duration::from_millis(300)));
    s.probes = Some(Probes {
        readiness: Some(exec(0, 10, 1)),
        liveness: Some(liveness),
        startup: None,
    });
    rig.instance(s).await;
    rig.settle().await.unwrap();
    let st = rig.status().await;
    assert_eq!(condition(&st, "Ready").1, "ProbesPending");
    until(&rig, "the readiness probe passes", |s| {
        s.common
            .condition("Ready")
            .is_some_and(|c| c.reason == "ProbesPassed")
    })
    .await;
    assert!(rig.containers.calls().iter().any(|c| c == "exec web"));
    until(&rig, "the liveness probe gives up", |s| {
        s.last_exit
            .as_ref()
            .is_some_and(|e| e.reason == "LivenessProbeFailed")
    })
    .await;
    let st = rig.status().await;
    assert!(rig.containers.calls().contains(&"kill web".to_string()));
    assert!(st.restarts >= 1, "the stop counts toward the burst: {st:?}");
}

#[tokio::test]
async fn usage_that_moved_is_written_and_a_limit_passed_is_said() {
    let rig = Rig::new();
    let config = ItemConfig {
        quotas: Quotas {
            state_limit: Some(100 << 10),
            storage_limit: Some(1 << 20),
            ..Default::default()
        },
        ..Default::default()
    };
    rig.item("1.0.0", true, config).await;
    rig.instance(spec("1.0.0")).await;
    rig.settle().await.unwrap();
    let p = rig.host.prepared("web").unwrap();
    assert_eq!(
        p.volume,
        Some((100 << 10) + (1 << 20)),
        "the volume holds both limits"
    );
    // The start's status write wakes the instance again: its first reading.
    rig.pass().await.unwrap();
    let first = rig
        .status()
        .await
        .usage
        .expect("a first reading at the start");
    // No CPU time: a rate over the test's milliseconds would move by itself.
    let sample = Sample {
        cpu_time_ns: 0,
        memory_bytes: 4 << 20,
        state_bytes: 500 << 10,
        storage_bytes: 10,
    };
    rig.host.set_sample("web", sample);
    // A running task is not looked at again for usage: the sampler's pass wakes it.
    assert_eq!(rig.settle().await.unwrap(), Action::AwaitChange);
    assert_eq!(rig.status().await.usage, Some(first), "no new reading yet");
    let running = vec![std::sync::Arc::new(rig.get().await)];
    let wake = aos_instance_controller::sampler::pass(&rig.env, &running);
    assert_eq!(wake, ["web"], "4 MiB more RAM moved");
    rig.settle().await.unwrap();
    let st = rig.status().await;
    let u = st.usage.clone().expect("a usage sample");
    assert_eq!(
        (u.ram_bytes, u.state_bytes, u.storage_bytes),
        (4 << 20, 500 << 10, 10)
    );
    let (over, reason, msg) = condition(&st, "StateLimitExceeded");
    assert_eq!((over.as_str(), reason.as_str()), ("True", "OverLimit"));
    assert_eq!(msg, "512000 bytes used of 102400");
    // Within the step: nothing to write.
    let running = vec![std::sync::Arc::new(rig.get().await)];
    let wake = aos_instance_controller::sampler::pass(&rig.env, &running);
    assert!(wake.is_empty(), "{wake:?}");
    assert_eq!(condition(&st, "StorageLimitExceeded").0, "False");
    assert!(
        st.common.condition("UploadLimitExceeded").is_none(),
        "no such limit set"
    );
}

#[tokio::test]
async fn a_network_that_refuses_the_instance_says_why() {
    let rig = Rig::new();
    rig.network().await;
    rig.networks.fail(
        "net",
        "SubnetExhausted",
        "no address is left in 10.0.0.0/30",
    );
    rig.item("1.0.0", true, ItemConfig::default()).await;
    let mut s = spec("1.0.0");
    s.network = Some(InstanceNetwork {
        network_id: "net".into(),
        ..Default::default()
    });
    rig.instance(s).await;
    let e = rig.settle().await.unwrap_err();
    assert!(e.to_string().contains("no address is left"), "{e}");
    let st = rig.status().await;
    let (running, reason, msg) = condition(&st, "Running");
    assert_eq!(
        (running.as_str(), reason.as_str()),
        ("False", "SubnetExhausted")
    );
    assert!(msg.contains("10.0.0.0/30"), "{msg}");
    assert_eq!(st.state, InstanceState::Activating);
    assert_eq!(rig.runs(), 0);
}

#[tokio::test]
async fn a_mode_the_node_does_not_permit_is_refused_before_anything_runs() {
    let rig = Rig::new();
    let config = ItemConfig {
        network_mode: Some("host".into()),
        ..Default::default()
    };
    rig.item("1.0.0", true, config).await;
    rig.instance(spec("1.0.0")).await;
    let e = rig.settle().await.unwrap_err();
    assert!(e.to_string().contains("allow_host_network"), "{e}");
    let st = rig.status().await;
    assert_eq!(condition(&st, "Running").1, "NotPermitted");
    assert_eq!(rig.runs(), 0);
    assert!(rig.host.prepared("web").is_none());
}
