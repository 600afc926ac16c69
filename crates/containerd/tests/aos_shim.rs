//! aosd's own shim (crates/shim, runtime by path) against a real containerd: the same
//! conformance suite as containerd's runc shim, alone and in groups; groups share a shim and a
//! killed shim ends only its own tasks; a task's output is written to aosd's log by the shim
//! itself, with no logger process.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use aos_containerd::{Containerd, Containers, TaskIo};
use aos_testkit::containerd::ContainerdProcess;
use common::{aos_shim, namespace, shims, task, RealHarness, AOS_SHIM};

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
    let log_dir = dir.path().join("log dir");
    std::fs::create_dir_all(&log_dir).unwrap();
    let script = "echo out1; echo err1 >&2; echo out2; printf 'no newline'";
    let mut t = task(dir.path(), "talker", &["/bin/sh", "-c", script]);
    // A logger that does not exist: were it run, the task could not start.
    t.io = TaskIo::Logger {
        binary: dir.path().join("no-such-logger"),
        args: vec![
            ("--dir".into(), log_dir.display().to_string()),
            ("--max-size".into(), "1048576".into()),
            ("--max-files".into(), "2".into()),
        ],
    };
    c.run(&t).await.unwrap();
    assert_eq!(c.wait("talker").await.unwrap(), 0);
    // The exit is reported once the log holds everything the task wrote.
    let text = std::fs::read_to_string(log_dir.join("output.log")).unwrap();
    let records: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let (_time, stream, kind, body) = (
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap(),
                parts.next().unwrap_or(""),
            );
            (format!("{stream} {kind}"), body.to_string())
        })
        .collect();
    let of = |stream: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|(k, _)| k.starts_with(stream))
            .map(|(_, b)| b.as_str())
            .collect()
    };
    assert_eq!(of("stdout"), ["out1", "out2", "no newline"], "{text}");
    assert_eq!(of("stderr"), ["err1"], "{text}");
    assert!(
        records
            .iter()
            .any(|(k, b)| k == "stdout P" && b == "no newline"),
        "an unfinished line is a partial record: {text}"
    );
    c.remove("talker").await.unwrap();
    assert!(shims(&daemon.socket, AOS_SHIM).is_empty());
}
