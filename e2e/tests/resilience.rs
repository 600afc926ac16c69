//! An instance's runtime in trouble: containerd away (the node and the instances say so, and
//! recover after), and an instance that writes past its state and storage limits.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use aos_e2e::condition;
use aos_e2e::node::{instance, service, Node};

#[test]
fn while_containerd_is_down_the_node_and_its_instances_say_so_and_recover_after() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::start("");
    let dir = service(
        &tmp.path().join("sleeper"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 3600\n",
    );
    node.install(&dir, "sleeper");
    node.apply(&instance("sleeper-0", "sleeper", "v1", 0, ""));
    let pid = node.active("sleeper-0")["status"]["pid"].clone();
    node.containerd.kill();
    let n = node.aosd.until("node", "e2e-node", 30, |v| {
        condition(v, "ContainerRuntimeReady")["status"] == "False"
    });
    assert_eq!(
        condition(&n, "ContainerRuntimeReady")["reason"],
        "RuntimeUnavailable"
    );
    let i = node.until_instance("sleeper-0", 60, |v| {
        condition(v, "Ready")["status"] == "Unknown"
    });
    assert_eq!(
        condition(&i, "Ready")["reason"],
        "RuntimeUnavailable",
        "{i}"
    );
    node.containerd.restart();
    node.aosd.until("node", "e2e-node", 30, |v| {
        condition(v, "ContainerRuntimeReady")["status"] == "True"
    });
    let back = node.until_instance("sleeper-0", 60, |v| {
        condition(v, "Ready")["status"] == "True"
    });
    assert_eq!(back["status"]["pid"], pid, "the task kept running: {back}");
}

#[test]
fn an_instance_cannot_write_more_than_its_state_and_storage_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    let dir = service(
        &tmp.path().join("filler"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  quotas:\n    storageLimit: 8388608\n    stateLimit: 4096\n",
        "#!/bin/sh\n/bin/busybox dd if=/dev/zero of=/storage/big bs=1048576 count=40 2>/tmp/err\necho \"dd exit $?\"\ncat /tmp/err\nif /bin/busybox dd if=/dev/zero of=/storage/more bs=1048576 count=1 2>/dev/null; then echo more ok; else echo more refused; fi\necho done\nexec sleep 3600\n",
    );
    node.install(&dir, "filler");
    let data = node.aosd.path().join("data");
    let free = |p: &Path| {
        let out = Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    let before = free(&data);
    node.apply(&instance("filler-0", "filler", "v1", 0, ""));
    let logs = node.logs_show("filler-0", "done");
    assert!(logs.contains("dd exit 1"), "{logs}");
    assert!(logs.contains("No space left on device"), "{logs}");
    assert!(logs.contains("more refused"), "{logs}");
    let stored = std::fs::metadata(data.join("instances/filler-0/volume/storage/big"))
        .unwrap()
        .len();
    assert!(
        stored < 12 << 20,
        "{stored} bytes got through an 8 MiB limit"
    );
    assert!(
        before.saturating_sub(free(&data)) < 24 << 20,
        "the data partition lost more than the volume"
    );
    node.aosd.ok(&["delete", "instance", "filler-0", "--wait"]);
    assert!(!aos_e2e::mounts_under(&data)
        .iter()
        .any(|m| m.ends_with("volume")));
}
