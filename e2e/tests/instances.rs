//! The container runtime end to end, driven through aosctl against a real containerd (started
//! per test), a real registry and real cgroups: instances run from a pulled item, log, keep
//! `/state.dat` across restarts and a version update, are restarted when killed, fail after a
//! crash loop, are adopted after `kill -9` of aosd, obey probes, and leave nothing behind.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aos_e2e::node::{free_port, instance, item, pack, service, Node};
use aos_testkit::Registry;
use serde_json::Value;

/// A file of an instance's cgroup: `/<namespace>/<name>` (aosd's default parent is its
/// containerd namespace) under the v1 controller or in the v2 tree.
fn cgroup_file(node: &Node, name: &str, v1_controller: &str, v1: &str, v2: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    let parent = node.aosd.namespace().unwrap();
    if root.join("cgroup.controllers").exists() {
        root.join(parent).join(name).join(v2)
    } else {
        root.join(v1_controller).join(parent).join(name).join(v1)
    }
}

#[test]
fn instances_of_a_pulled_item_run_log_keep_state_restart_update_and_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let mut node = Node::start(&format!(
        "[images]\ninsecure_registries = [\"{}\"]\n",
        registry.host()
    ));
    let aosd = &node.aosd;
    // Two versions of the example service; the second greets differently.
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services/state-writer");
    let v2 = tmp.path().join("v2");
    Command::new("cp")
        .arg("-r")
        .arg(&examples)
        .arg(&v2)
        .status()
        .unwrap();
    let cfg = std::fs::read_to_string(v2.join("meta/config.yaml")).unwrap();
    std::fs::write(
        v2.join("meta/config.yaml"),
        cfg.replace("GREETING: hello", "GREETING: hello-v2"),
    )
    .unwrap();
    for (dir, tag) in [(examples.as_path(), "1.0.0"), (v2.as_path(), "2.0.0")] {
        let archive = tmp.path().join(format!("{tag}.tar"));
        pack(aosd, dir, &archive);
        let reference = format!("{}/e2e/state-writer:{tag}", registry.host());
        aosd.ok(&[
            "push",
            archive.to_str().unwrap(),
            &reference,
            "--insecure",
            &registry.host(),
        ]);
    }
    let src = |tag: &str| format!("registry: {}/e2e/state-writer:{tag}", registry.host());
    node.apply(
        &(item("state-writer", "1.0.0", &src("1.0.0"))
            + &instance("sw-0", "state-writer", "1.0.0", 0, "")
            + &instance("sw-1", "state-writer", "1.0.0", 1, "")),
    );
    let a = node.active("sw-0");
    let b = node.active("sw-1");
    assert_ne!(
        a["status"]["uid"], b["status"]["uid"],
        "each instance has its own uid"
    );
    assert!(node
        .logs_show("sw-0", "hello from state-writer (start 1)")
        .contains("start 1"));
    node.logs_show("sw-1", "hello from state-writer (start 1)");
    assert_eq!(node.file("sw-0", "state.dat").trim(), "1");

    // Limits of the item config are in the task's cgroup.
    let limit = std::fs::read_to_string(cgroup_file(
        &node,
        "sw-0",
        "memory",
        "memory.limit_in_bytes",
        "memory.max",
    ))
    .unwrap();
    assert_eq!(limit.trim(), "16777216");
    let pids = std::fs::read_to_string(cgroup_file(&node, "sw-0", "pids", "pids.max", "pids.max"))
        .unwrap();
    assert_eq!(pids.trim(), "16");

    // aosd killed and started again: the task is adopted, not restarted.
    let pid = a["status"]["pid"].as_u64().unwrap();
    node.aosd.crash_and_restart();
    std::thread::sleep(Duration::from_secs(2));
    let again = node.active("sw-0");
    assert_eq!(
        again["status"]["pid"].as_u64(),
        Some(pid),
        "{}",
        node.aosd.log()
    );
    assert_eq!(again["status"]["restarts"], 0);

    // The process killed: restarted, counted, state kept.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let v = node.until_instance("sw-0", 30, |v| {
        v["status"]["restarts"] == 1
            && v["status"]["state"] == "active"
            && v["status"]["pid"].as_u64() != Some(pid)
    });
    assert_eq!(v["status"]["lastExit"]["reason"], "Killed");
    assert_eq!(v["status"]["lastExit"]["exitCode"], 137);
    node.logs_show("sw-0", "(start 2)");
    assert_eq!(node.file("sw-0", "state.dat").trim(), "2");

    // A version update: the new version is downloaded, then replaces the old task; state stays.
    node.apply(
        &(item("state-writer", "2.0.0", &src("2.0.0"))
            + &instance("sw-0", "state-writer", "2.0.0", 0, "")),
    );
    node.until_instance("sw-0", 60, |v| {
        v["status"]["runningVersion"] == "2.0.0" && v["status"]["state"] == "active"
    });
    node.logs_show("sw-0", "hello-v2 from state-writer (start 3)");
    assert_eq!(node.file("sw-0", "state.dat").trim(), "3");
    assert_eq!(
        node.json("item", "state-writer-1.0.0")["status"]["phase"],
        "Ready",
        "the old version stays for rollback"
    );

    // Usage is sampled into the status and shown by top.
    let v = node.until_instance("sw-1", 30, |v| {
        v["status"]["usage"]["ramBytes"].as_u64().unwrap_or(0) > 0
    });
    assert_eq!(
        v["status"]["usage"]["stateBytes"], 2,
        "\"1\\n\" in state.dat"
    );
    assert!(node.aosd.ok(&["top"]).contains("sw-1"));

    // Delete: nothing of the instances is left.
    let aosd = &node.aosd;
    aosd.ok(&["delete", "instance", "sw-0", "sw-1", "--wait"]);
    assert_eq!(node.containers().trim(), "", "no container left");
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains("/sw-0/") && !mounts.contains("/sw-1/"),
        "{mounts}"
    );
    for n in ["sw-0", "sw-1"] {
        assert!(!aosd.path().join("data/instances").join(n).exists());
        assert!(!aosd.path().join("data/run/instances").join(n).exists());
        assert!(
            !cgroup_file(&node, n, "memory", "", "").exists(),
            "cgroup of {n} left"
        );
    }
    // The last instance took the empty parents with it: its cgroup parent in every hierarchy
    // and runc's state directory of the namespace.
    let ns = aosd.namespace().unwrap();
    let cg = Path::new("/sys/fs/cgroup");
    let mut parents = vec![cg.join(&ns)];
    for h in std::fs::read_dir(cg).unwrap().flatten() {
        parents.push(h.path().join(&ns));
    }
    for p in parents {
        assert!(!p.exists(), "{} left", p.display());
    }
    assert!(!Path::new("/run/containerd/runc").join(&ns).exists());
}

#[test]
fn a_crash_loop_fails_after_the_burst_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let dir = service(
        &tmp.path().join("crasher"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  runParameters:\n    restartInterval: 0.2s\n    startBurst: 3\n    startInterval: 10s\n",
        "#!/bin/sh\necho boom\nexit 3\n",
    );
    node.install(&dir, "crasher");
    node.apply(&instance("crasher-0", "crasher", "v1", 0, ""));
    // Followed from the start: the follower ends when the Instance is deleted.
    node.until_instance("crasher-0", 30, |v| v["status"]["uid"].is_u64());
    let follow = node
        .aosd
        .aosctl()
        .args(["logs", "-f", "crasher-0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let v = node.until_instance("crasher-0", 60, |v| v["status"]["state"] == "failed");
    assert_eq!(v["status"]["lastExit"]["exitCode"], 3);
    assert_eq!(v["status"]["lastExit"]["reason"], "Error");
    assert_eq!(
        v["status"]["restarts"], 2,
        "three starts: the first and two restarts"
    );
    let running = aos_e2e::condition(&v, "Running");
    assert_eq!(running["reason"], "CrashLoop");
    assert!(
        running["message"].as_str().unwrap().contains("3 starts"),
        "{running}"
    );
    let logs = node.logs_show("crasher-0", "boom");
    assert_eq!(logs.matches("boom").count(), 3, "{logs}");
    // Each exit is counted in one Warning event, which describe shows with the starts. Events
    // are written from a queue behind the status: the third exit's count may come a little later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let exits = loop {
        let e = node.aosd.event("Instance", "crasher-0", "Error", 10);
        if e["spec"]["count"] == 3 || std::time::Instant::now() > deadline {
            break e;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(exits["spec"]["type"], "Warning");
    assert_eq!(exits["spec"]["count"], 3, "{exits:#}");
    assert_eq!(exits["spec"]["message"], "exited with status 3");
    node.aosd.event("Item", "crasher-v1", "Pulled", 10);
    let described = node.aosd.ok(&["describe", "instance", "crasher-0"]);
    let events = described.split_once("Events:").unwrap().1;
    assert!(
        events.contains("Started") && events.contains("(x3 over"),
        "{described}"
    );
    let wide = node
        .aosd
        .ok(&["get", "instance", "crasher-0", "-o", "wide"]);
    assert!(
        wide.lines().nth(1).unwrap().ends_with("CrashLoop"),
        "{wide}"
    );
    // Failed stays failed until the Instance changes; a change starts it afresh.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(node.json("instance", "crasher-0")["status"]["restarts"], 2);
    node.apply(&instance(
        "crasher-0",
        "crasher",
        "v1",
        0,
        "  env:\n  - name: TRY\n    value: again\n",
    ));
    node.until_instance("crasher-0", 30, |v| {
        v["status"]["restarts"].as_u64() > Some(2)
    });
    node.logs_show("crasher-0", "boom\nboom\nboom\nboom");
    let tail = node
        .aosd
        .ok(&["logs", "crasher-0", "--tail", "2", "--timestamps"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(
        tail.lines()
            .all(|l| l.ends_with(" boom") && l.starts_with("20")),
        "{tail}"
    );
    node.aosd.ok(&["delete", "instance", "crasher-0", "--wait"]);
    let followed = follow.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&followed.stdout);
    assert!(
        text.matches("boom").count() >= 4,
        "logs -f saw every start: {text}"
    );
    assert_eq!(node.containers().trim(), "");
}

#[test]
fn a_failing_readiness_probe_keeps_an_instance_unready_and_a_failing_liveness_probe_restarts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let port = free_port();
    let dir = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nmkdir -p /tmp/www && echo ok > /tmp/www/healthy\nexec /bin/busybox httpd -f -p \"127.0.0.1:$PORT\" -h /tmp/www\n",
    );
    node.install(&dir, "web");
    let probe = |kind: &str, path: &str| {
        format!("    {kind}:\n      httpGet:\n        path: {path}\n        port: {port}\n      period: 0.3s\n      failureThreshold: 2\n")
    };
    let exec = "    readiness:\n      exec:\n        command: [\"/bin/test\", \"-f\", \"/tmp/www/healthy\"]\n      period: 0.3s\n";
    let env = format!("  env:\n  - name: PORT\n    value: \"{port}\"\n");
    node.apply(&instance(
        "web-ready",
        "web",
        "v1",
        0,
        &format!("{env}  probes:\n{exec}"),
    ));
    let ready = |v: &Value| {
        v["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .map(|c| c["status"] == "True")
    };
    // An exec probe that passes inside the instance makes it Ready.
    node.until_instance("web-ready", 60, |v| ready(v) == Some(true));
    // So does an HTTP probe of a page that is there.
    node.apply(&instance(
        "web-ready",
        "web",
        "v1",
        0,
        &format!("{env}  probes:\n{}", probe("readiness", "/healthy")),
    ));
    node.until_instance("web-ready", 60, |v| ready(v) == Some(true));
    // The same instance probing a missing page: running, never Ready.
    node.apply(&instance(
        "web-ready",
        "web",
        "v1",
        0,
        &format!("{env}  probes:\n{}", probe("readiness", "/missing")),
    ));
    let v = node.until_instance("web-ready", 30, |v| {
        ready(v) == Some(false) && v["status"]["state"] == "active"
    });
    std::thread::sleep(Duration::from_secs(1));
    let v2 = node.json("instance", "web-ready");
    assert_eq!(ready(&v2), Some(false), "{v2:#}");
    assert_eq!(
        v2["status"]["restarts"], v["status"]["restarts"],
        "readiness does not restart"
    );

    // Liveness on the missing page: restarted with the probe's reason.
    node.apply(&instance(
        "web-ready",
        "web",
        "v1",
        0,
        &format!("{env}  probes:\n{}", probe("liveness", "/missing")),
    ));
    let v = node.until_instance("web-ready", 30, |v| {
        v["status"]["lastExit"]["reason"] == "LivenessProbeFailed"
    });
    assert!(v["status"]["restarts"].as_u64() >= Some(1));
    node.aosd.ok(&["delete", "instance", "web-ready", "--wait"]);
    assert_eq!(node.containers().trim(), "");
}

#[test]
fn an_instance_over_its_memory_limit_is_oom_killed_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let dir = service(
        &tmp.path().join("hog"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  quotas:\n    ramLimit: 8388608\n  runParameters:\n    restartInterval: 60s\n",
        "#!/bin/sh\necho eating\nexec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1\n",
    );
    node.install(&dir, "hog");
    node.apply(&instance("hog-0", "hog", "v1", 0, ""));
    let v = node.until_instance("hog-0", 60, |v| {
        v["status"]["lastExit"]["reason"].is_string()
    });
    assert_eq!(v["status"]["lastExit"]["reason"], "OOMKilled", "{v:#}");
    assert_eq!(
        node.aosd.event("Instance", "hog-0", "OOMKilled", 10)["spec"]["type"],
        "Warning"
    );
    assert_eq!(v["status"]["lastExit"]["exitCode"], 137);
    node.aosd.ok(&["delete", "instance", "hog-0", "--wait"]);
    assert_eq!(node.containers().trim(), "");
}

#[test]
fn an_instance_of_a_runtime_the_node_does_not_serve_says_so() {
    let node = Node::start("[runtimes.boot]\nenabled = true\nsimulate = true\n");
    node.apply(
        &instance("fw-0", "firmware", "1.0.0", 0, "")
            .replace("runtime: container", "runtime: boot"),
    );
    let v = node.until_instance("fw-0", 30, |v| v["status"]["state"] == "failed");
    let ready = aos_e2e::condition(&v, "Ready");
    assert_eq!(ready["reason"], "RuntimeUnavailable", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("no boot instances"),
        "{ready}"
    );
    let wide = node.aosd.ok(&["get", "instance", "fw-0", "-o", "wide"]);
    assert!(wide.contains("RuntimeUnavailable"), "{wide}");
    node.aosd
        .ok(&["delete", "instance", "fw-0", "--wait", "--timeout=20s"]);
}

/// Tries what the default system-call filter refuses, and what an isolated network stops,
/// printing one result per line (`ok` or the errno name).
const PROBE_SCRIPT: &str = r#"#!/bin/sh
exec /usr/bin/python3 - "$HOST_IP" "$HOST_PORT" <<'PY'
import ctypes, errno, platform, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": {"keyctl": 250, "io_uring_setup": 425},
      "aarch64": {"keyctl": 219, "io_uring_setup": 425}}[platform.machine()]
def report(name, r):
    print(name, "ok" if r >= 0 else errno.errorcode.get(ctypes.get_errno(), "?"), flush=True)
report("unshare-user", libc.unshare(0x10000000))
report("keyctl", libc.syscall(nr["keyctl"], 0, ctypes.c_long(-3), 1))
params = ctypes.create_string_buffer(120)
report("io_uring", libc.syscall(nr["io_uring_setup"], 1, params))
for host in (sys.argv[1], "127.0.0.1"):
    try:
        socket.create_connection((host, int(sys.argv[2])), timeout=2).close()
        print("host", host, "ok", flush=True)
    except OSError as e:
        print("host", host, errno.errorcode.get(e.errno, "timeout"), flush=True)
print("done", flush=True)
time.sleep(3600)
PY
"#;

/// The host's address on its default route.
fn host_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "1.1.1.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().unwrap().to_string();
        }
    }
    panic!("no source address in {text}");
}

#[test]
fn instances_cannot_make_namespaces_keyrings_or_io_uring_and_reach_nothing_without_a_network() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let env = format!(
        "  env:\n  - name: HOST_IP\n    value: \"{}\"\n  - name: HOST_PORT\n    value: \"{port}\"\n",
        host_ip()
    );
    let node = Node::start("allow_unconfined = true\n");
    for (name, extra) in [("confined", ""), ("unconfined", "  seccomp: unconfined\n")] {
        let dir = service(
            &tmp.path().join(name),
            &format!("configuration:\n  cmd: /usr/bin/svc.sh\n{extra}"),
            PROBE_SCRIPT,
        );
        node.install(&dir, name);
    }
    node.apply(
        &(instance("confined-0", "confined", "v1", 0, &env)
            + &instance("unconfined-0", "unconfined", "v1", 0, &env)),
    );
    let confined = node.logs_show("confined-0", "done");
    for line in ["unshare-user EPERM", "keyctl EPERM", "io_uring EPERM"] {
        assert!(confined.contains(line), "{line} missing:\n{confined}");
    }
    // Its own namespace has only loopback: neither the host's address nor its loopback
    // services are there.
    assert!(!confined.contains(" ok\n"), "{confined}");
    let unconfined = node.logs_show("unconfined-0", "done");
    for line in ["unshare-user ok", "keyctl ok", "io_uring ok"] {
        assert!(unconfined.contains(line), "{line} missing:\n{unconfined}");
    }
    drop(listener);
}

#[test]
fn the_host_network_and_no_filter_are_refused_where_the_node_does_not_allow_them() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    for (name, extra) in [
        ("hostnet", "  networkMode: host\n"),
        ("nofilter", "  seccomp: unconfined\n"),
    ] {
        let dir = service(
            &tmp.path().join(name),
            &format!("configuration:\n  cmd: /usr/bin/svc.sh\n{extra}"),
            "#!/bin/sh\nexec sleep 3600\n",
        );
        node.install(&dir, name);
        node.apply(&instance(&format!("{name}-0"), name, "v1", 0, ""));
        let v = node.until_instance(&format!("{name}-0"), 30, |v| {
            v["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "NotPermitted"))
        });
        assert!(v.to_string().contains("allow_"), "{v}");
    }
}
