//! The containerd implementation of the Containers port against a real containerd: a task runs
//! from our own overlay rootfs mounts, writes to its log file, exits with its status (seen by
//! wait and by the event stream), can be killed, and removal leaves nothing.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use aos_containerd::{Containerd, Containers, TaskEvent, TaskIo};
use aos_testkit::containerd::ContainerdProcess;
use common::{namespace, shims, task, RealHarness, GO_SHIM};
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_from_our_rootfs_mounts_and_its_exit_is_seen_twice() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("hello"))
        .await
        .unwrap();
    let mut events = c.events().await.unwrap();
    let t = task(
        dir.path(),
        "hello",
        &["/bin/sh", "-c", "echo hello from the task; exit 3"],
    );
    // Give the subscription a moment to reach containerd.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = c.run(&t).await.unwrap();
    assert!(pid > 0);
    // A wait after a fast exit still gets the status: the task stays until it is removed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let status = tokio::time::timeout(Duration::from_secs(20), c.wait("hello"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 3);
    let ev = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        TaskEvent::Exited {
            id: "hello".into(),
            pid,
            status: 3
        }
    );
    let TaskIo::Files { stdout, .. } = &t.io else {
        unreachable!()
    };
    assert_eq!(
        std::fs::read_to_string(stdout).unwrap(),
        "hello from the task\n"
    );
    let seen = c.inspect("hello").await.unwrap().unwrap();
    assert_eq!(
        seen.task.map(|t| (t.running, t.exit_status)),
        Some((false, 3))
    );
    assert!(c.inspect("nothing-here").await.unwrap().is_none());
    let listed = c.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].labels["aos.edge/test"], "yes");
    assert_eq!(listed[0].task.map(|t| t.running), Some(false));
    c.remove("hello").await.unwrap();
    c.remove("hello").await.unwrap();
    assert!(c.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_task_is_killed_and_removed_without_a_trace() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("sleeper"))
        .await
        .unwrap();
    let t = task(dir.path(), "sleeper", &["/bin/sleep", "300"]);
    c.run(&t).await.unwrap();
    let listed = c.list().await.unwrap();
    assert_eq!(listed[0].task.map(|t| t.running), Some(true));
    let waiter = {
        let c = c.clone();
        tokio::spawn(async move { c.wait("sleeper").await })
    };
    // PID 1 of the container has no SIGTERM handler, so it ignores SIGTERM: kill.
    c.kill("sleeper", 9).await.unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), waiter)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, 128 + 9);
    c.remove("sleeper").await.unwrap();
    assert!(c.list().await.unwrap().is_empty());
    // The shim unmounted the rootfs it mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&*daemon.dir.path().to_string_lossy()),
        "a mount of the task is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_passes_the_conformance_suite() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("suite"))
        .await
        .unwrap();
    let h = RealHarness {
        dir: dir.path().to_path_buf(),
    };
    aos_containerd::conformance::run(&c, &h, "suite-").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_with_shim_groups_passes_the_conformance_suite() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("groups"))
        .await
        .unwrap()
        .with_shim_group(3);
    let h = RealHarness {
        dir: dir.path().to_path_buf(),
    };
    aos_containerd::conformance::run(&c, &h, "grouped-").await;
    assert!(
        shims(&daemon.socket, GO_SHIM).is_empty(),
        "a shim outlived its tasks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_groups_of_two_share_shims_and_a_killed_shim_ends_only_its_own_tasks() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("shims"))
        .await
        .unwrap()
        .with_shim_group(2);
    common::groups_of_two_share_shims_and_a_killed_shim_ends_only_its_own_tasks(
        &c,
        dir.path(),
        &daemon.socket,
        GO_SHIM,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_output_goes_through_aos_logger_into_its_log() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("logger"))
        .await
        .unwrap();
    let logger = aos_testkit::bin("aos-logger");
    common::a_task_s_output_lands_in_its_log(&c, dir.path(), &logger, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_containerd_does_not_have_is_refused_by_name_and_leaves_no_container() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("noshim"))
        .await
        .unwrap()
        .with_shim("io.containerd.nosuch.v1");
    let t = task(dir.path(), "noshim", &["/bin/sleep", "300"]);
    let e = c.run(&t).await.unwrap_err().to_string();
    assert!(e.contains("nosuch"), "{e}");
    assert!(c.list().await.unwrap().is_empty(), "a container is left");
}
