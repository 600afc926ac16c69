//! The containerd implementation of the Containers port against a real containerd: a task runs
//! from our own overlay rootfs mounts, writes to its log file, exits with its status (seen by
//! wait and by the event stream), can be killed, and removal leaves nothing.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use aos_containerd::{Containerd, Containers, RootfsMount, TaskEvent, TaskIo, TaskSpec};
use aos_testkit::containerd::ContainerdProcess;
use futures::StreamExt;

/// A minimal rootfs: busybox and a shell.
fn busybox_rootfs(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    for d in ["proc", "dev", "sys", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).unwrap();
    std::fs::set_permissions(
        dir.join("bin/busybox"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    for app in ["sh", "echo", "sleep", "cat"] {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(app)).unwrap();
    }
}

/// runc keeps its state per namespace under /run, shared by every containerd: each test run
/// gets its own namespace.
fn namespace(test: &str) -> String {
    format!("aos-test-{}-{test}", std::process::id())
}

/// A task's spec; its cgroup is a top-level one of its own, which runc removes with the task.
fn spec(id: &str, args: &[&str]) -> oci_spec::runtime::Spec {
    let mut v = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
    v["process"]["args"] = serde_json::json!(args);
    v["process"]["terminal"] = serde_json::json!(false);
    v["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    v["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
    // Flat, so that runc removes the whole of it with the task.
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}", namespace(id)));
    serde_json::from_value(v).unwrap()
}

fn task(dir: &Path, id: &str, args: &[&str]) -> TaskSpec {
    let lower = dir.join("lower");
    if !lower.exists() {
        busybox_rootfs(&lower);
    }
    let (upper, work) = (
        dir.join(format!("{id}-upper")),
        dir.join(format!("{id}-work")),
    );
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    TaskSpec {
        id: id.to_string(),
        spec: spec(id, args),
        rootfs: vec![RootfsMount {
            type_: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={}", lower.display()),
                format!("upperdir={}", upper.display()),
                format!("workdir={}", work.display()),
            ],
        }],
        io: TaskIo::Files {
            stdout: dir.join(format!("{id}.out")),
            stderr: dir.join(format!("{id}.err")),
        },
        labels: [("aos.edge/test".to_string(), "yes".to_string())].into(),
    }
}

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

struct RealHarness {
    dir: std::path::PathBuf,
}

impl aos_containerd::conformance::Harness for RealHarness {
    fn task(&self, id: &str, what: aos_containerd::conformance::Behavior) -> TaskSpec {
        use aos_containerd::conformance::Behavior;
        let script = match what {
            Behavior::Exit(n) => format!("exit {n}"),
            Behavior::Sleep => "exec sleep 300".into(),
        };
        task(&self.dir, id, &["/bin/sh", "-c", &script])
    }

    fn exec_exit(&self, code: u32) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), format!("exit {code}")]
    }
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
        shims(&daemon.socket).is_empty(),
        "a shim outlived its tasks"
    );
}

/// The runc v2 shims serving the containerd at `socket`: (pid, the id it was started with,
/// which is its first task's).
fn shims(socket: &Path) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let arg = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        if args[0].ends_with("containerd-shim-runc-v2")
            && arg("-address").as_deref() == Some(&*socket.to_string_lossy())
        {
            out.push((pid, arg("-id").unwrap_or_default()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_groups_of_two_share_shims_and_a_killed_shim_ends_only_its_own_tasks() {
    let daemon = ContainerdProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let c = Containerd::connect(&daemon.socket, &namespace("shims"))
        .await
        .unwrap()
        .with_shim_group(2);
    let mut events = c.events().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for id in &ids {
        c.run(&task(dir.path(), id, &["/bin/sleep", "300"]))
            .await
            .unwrap();
    }
    let running = shims(&daemon.socket);
    let names: Vec<&str> = running.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["s0", "s2", "s4"], "five tasks, three shims");
    let group_of =
        |info: &aos_containerd::TaskInfo| info.labels[aos_containerd::GROUP_LABEL].clone();
    let listed = c.list().await.unwrap();
    let in_first: Vec<String> = listed
        .iter()
        .filter(|t| group_of(t) == "shim-0")
        .map(|t| t.id.clone())
        .collect();
    assert_eq!(in_first, ["s0", "s1"]);

    // A shim killed: containerd ends its two tasks and reports their exits; the rest run on.
    let _ = std::process::Command::new("kill")
        .args(["-9", &running[0].0.to_string()])
        .status();
    let mut exited = std::collections::BTreeSet::new();
    while exited.len() < 2 {
        let ev = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("the killed shim's tasks are reported")
            .unwrap();
        exited.insert(ev.id().to_string());
    }
    assert_eq!(exited, ["s0", "s1"].map(String::from).into());
    for t in c.list().await.unwrap() {
        let running = t.task.is_some_and(|s| s.running);
        assert_eq!(running, !in_first.contains(&t.id), "task {}", t.id);
    }
    // Run again, they start a new shim for the same group.
    for id in &in_first {
        c.remove(id).await.unwrap();
        c.run(&task(dir.path(), id, &["/bin/sleep", "300"]))
            .await
            .unwrap();
    }
    let names: Vec<String> = shims(&daemon.socket).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["s0", "s2", "s4"]);
    for id in &ids {
        c.kill(id, 9).await.unwrap();
        let _ = c.wait(id).await;
        c.remove(id).await.unwrap();
    }
    assert!(
        shims(&daemon.socket).is_empty(),
        "a shim outlived its tasks"
    );
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
