//! An instance's runtime in trouble: containerd away (the node and the instances say so, and
//! recover after), a shim killed (the tasks of its group restart, the others run on), and an
//! instance that writes past its state and storage limits.
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

/// The parent of a process (a task's first process is its shim's child).
fn parent(pid: u64) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_killed_shim_restarts_the_instances_of_its_group_and_no_other() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("shim_group = 2\n");
    let dir = service(
        &tmp.path().join("sleeper"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 3600\n",
    );
    node.install(&dir, "sleeper");
    let names = ["grp-0", "grp-1", "grp-2"];
    let docs: String = names
        .iter()
        .enumerate()
        .map(|(i, n)| instance(n, "sleeper", "v1", i as u64, ""))
        .collect();
    node.apply(&docs);
    let pids: Vec<u64> = names
        .iter()
        .map(|n| node.active(n)["status"]["pid"].as_u64().unwrap())
        .collect();
    let shims: Vec<u64> = pids.iter().map(|p| parent(*p)).collect();
    let mut distinct = shims.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 2, "three tasks in groups of two: two shims");
    // The shim serving two tasks is killed.
    let victim = *distinct
        .iter()
        .find(|s| shims.iter().filter(|x| x == s).count() == 2)
        .unwrap();
    let _ = Command::new("kill")
        .args(["-9", &victim.to_string()])
        .status();
    for (i, name) in names.iter().enumerate() {
        if shims[i] == victim {
            // containerd ends the tasks of a dead shim; aosd restarts them in a new one.
            let v = node.until_instance(name, 60, |v| {
                v["status"]["state"] == "active"
                    && v["status"]["pid"].as_u64().is_some_and(|p| p != pids[i])
            });
            assert_eq!(v["status"]["restarts"], 1, "{v}");
            assert_eq!(v["status"]["lastExit"]["reason"], "TaskLost", "{v}");
            node.aosd.event("Instance", name, "TaskLost", 30);
        } else {
            let v = node.json("instance", name);
            assert_eq!(v["status"]["pid"].as_u64(), Some(pids[i]), "untouched: {v}");
            assert_eq!(v["status"]["restarts"], 0);
        }
    }
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
    // What the data dir holds on its own file system (`du -x`: the volume's image file, not
    // what is mounted from it), so that other tests writing to the same disk do not count.
    let used = |p: &Path| {
        let out = Command::new("du").args(["-sxB1"]).arg(p).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = used(&data);
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
        used(&data).saturating_sub(before) < 24 << 20,
        "the data partition lost more than the volume"
    );
    node.aosd.ok(&["delete", "instance", "filler-0", "--wait"]);
    assert!(!aos_e2e::mounts_under(&data)
        .iter()
        .any(|m| m.ends_with("volume")));
}
