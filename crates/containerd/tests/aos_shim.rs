//! aosd's own shim (crates/shim, runtime by path) against a real containerd: the same
//! conformance suite as containerd's runc shim, alone and in groups; groups share a shim and a
//! killed shim ends only its own tasks; a task's output is written to aosd's log by the shim
//! itself, with no logger process.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use aos_containerd::Containerd;
use aos_testkit::containerd::ContainerdProcess;
use common::{aos_shim, namespace, shims, RealHarness, AOS_SHIM};

async fn connect(daemon: &ContainerdProcess, test: &str) -> Containerd {
    Containerd::connect(&daemon.socket, &namespace(test))
        .await
        .unwrap()
        .with_shim(&aos_shim().to_string_lossy())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aos_shim_passes_the_conformance_suite() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = connect(&daemon, "aos-suite").await;
    let h = RealHarness {
        dir: dir.path().to_path_buf(),
    };
    aos_containerd::conformance::run(&c, &h, "aos-").await;
    assert!(
        shims(&daemon.socket, AOS_SHIM).is_empty(),
        "a shim outlived its task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aos_shim_in_groups_passes_the_conformance_suite() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = connect(&daemon, "aos-groups").await.with_shim_group(3);
    let h = RealHarness {
        dir: dir.path().to_path_buf(),
    };
    aos_containerd::conformance::run(&c, &h, "aos-grouped-").await;
    assert!(
        shims(&daemon.socket, AOS_SHIM).is_empty(),
        "a shim outlived its tasks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_groups_of_two_share_aos_shims_and_a_killed_one_ends_only_its_own_tasks() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = connect(&daemon, "aos-shims").await.with_shim_group(2);
    common::groups_of_two_share_shims_and_a_killed_shim_ends_only_its_own_tasks(
        &c,
        dir.path(),
        &daemon.socket,
        AOS_SHIM,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_output_is_written_to_aosd_s_log_by_the_shim_without_a_logger_process() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = connect(&daemon, "aos-logs").await;
    // A logger that does not exist: were it run, the task could not start.
    let logger = dir.path().join("no-such-logger");
    common::a_task_s_output_lands_in_its_log(&c, dir.path(), &logger, true).await;
    assert!(shims(&daemon.socket, AOS_SHIM).is_empty());
}
