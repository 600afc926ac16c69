//! What the tests against a real containerd share: a busybox rootfs mounted as overlay, task
//! specs, the conformance harness, and the shim processes of a containerd.
// Each test file uses its own part of this.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use std::time::Duration;

use aos_containerd::{Containerd, Containers, RootfsMount, TaskIo, TaskSpec};
use futures::StreamExt;

/// containerd's runc shim's executable.
pub const GO_SHIM: &str = "containerd-shim-runc-v2";
/// aosd's shim's executable (crates/shim).
pub const AOS_SHIM: &str = "containerd-shim-aos-v1";

/// The built aosd shim (`target/debug`); the workspace's test run builds it
/// (`cargo build --workspace --bins`, hack/test.sh).
pub fn aos_shim() -> PathBuf {
    aos_testkit::bin(AOS_SHIM)
}

/// A minimal rootfs: busybox and a shell.
pub fn busybox_rootfs(dir: &Path) {
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
pub fn namespace(test: &str) -> String {
    format!("aos-test-{}-{test}", std::process::id())
}

/// A task's spec; its cgroup is a top-level one of its own, which runc removes with the task.
pub fn spec(id: &str, args: &[&str]) -> oci_spec::runtime::Spec {
    let mut v = serde_json::to_value(oci_spec::runtime::Spec::default()).unwrap();
    v["process"]["args"] = serde_json::json!(args);
    v["process"]["terminal"] = serde_json::json!(false);
    v["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    v["root"] = serde_json::json!({"path": "rootfs", "readonly": false});
    // Flat, so that runc removes the whole of it with the task.
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}", namespace(id)));
    serde_json::from_value(v).unwrap()
}

pub fn task(dir: &Path, id: &str, args: &[&str]) -> TaskSpec {
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

pub struct RealHarness {
    pub dir: std::path::PathBuf,
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

/// The shims (`binary` names their executable's file) serving the containerd at `socket`:
/// (pid, the id it was started with, which is its first task's).
pub fn shims(socket: &Path, binary: &str) -> Vec<(u32, String)> {
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
        if args[0].ends_with(binary)
            && arg("-address").as_deref() == Some(&*socket.to_string_lossy())
        {
            out.push((pid, arg("-id").unwrap_or_default()));
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

/// Five tasks in groups of two run in three shims (named after each group's first task); a
/// shim killed ends its group's two tasks, reported as exits, and no other; run again, they
/// start a new shim for the same group; once all are removed no shim is left.
pub async fn groups_of_two_share_shims_and_a_killed_shim_ends_only_its_own_tasks(
    c: &Containerd,
    dir: &Path,
    socket: &Path,
    binary: &str,
) {
    let mut events = c.events().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
    for id in &ids {
        c.run(&task(dir, id, &["/bin/sleep", "300"])).await.unwrap();
    }
    let running = shims(socket, binary);
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
        c.run(&task(dir, id, &["/bin/sleep", "300"])).await.unwrap();
    }
    let names: Vec<String> = shims(socket, binary).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["s0", "s2", "s4"]);
    for id in &ids {
        c.kill(id, 9).await.unwrap();
        let _ = c.wait(id).await;
        c.remove(id).await.unwrap();
    }
    assert!(
        shims(socket, binary).is_empty(),
        "a shim outlived its tasks"
    );
}

/// A task writing to both streams through `logger`'s URI (run by the shim, or not): once its
/// exit is seen, the log holds each line as a record of its stream, in order. With
/// `tail_kept` the unterminated last line is there too, as a partial record: aosd's shim
/// drains the pipes before it reports the exit; containerd's Go shim ends aos-logger when the
/// task is deleted, and that line is then mostly lost (seen in every run here).
pub async fn a_task_s_output_lands_in_its_log(
    c: &Containerd,
    dir: &Path,
    logger: &Path,
    tail_kept: bool,
) {
    let log_dir = dir.join("log dir");
    std::fs::create_dir_all(&log_dir).unwrap();
    let script = "echo out1; echo err1 >&2; echo out2; printf 'no newline'";
    let mut t = task(dir, "talker", &["/bin/sh", "-c", script]);
    t.io = TaskIo::Logger {
        binary: logger.to_path_buf(),
        args: vec![
            ("--dir".into(), log_dir.display().to_string()),
            ("--max-size".into(), "1048576".into()),
            ("--max-files".into(), "2".into()),
        ],
    };
    c.run(&t).await.unwrap();
    assert_eq!(c.wait("talker").await.unwrap(), 0);
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
    let of = |kind: &str| -> Vec<&str> {
        records
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, b)| b.as_str())
            .collect()
    };
    assert_eq!(of("stdout F"), ["out1", "out2"], "{text}");
    assert_eq!(of("stderr F"), ["err1"], "{text}");
    if tail_kept {
        assert_eq!(
            of("stdout P"),
            ["no newline"],
            "an unfinished line is a partial record: {text}"
        );
    }
    c.remove("talker").await.unwrap();
}
