//! Alerts end to end: an instance whose item config has an `alertRules.ram` rule fills its
//! `/tmp` (memory, charged to its cgroup) past the rule's maximum, holds it, then frees it;
//! the alert is raised, continues and falls, each seen as an Event about the Instance.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use aos_e2e::node::{instance, service, Node};

#[test]
fn a_memory_hog_raises_continues_and_ends_a_ram_alert_seen_as_events() {
    let tmp = tempfile::tempdir().unwrap();
    let node = Node::start("");
    // 48 MiB in /tmp (a tmpfs) of a 64 MiB memory limit: 75 % and more, above the maximum of
    // 70 %; after `rm`, a few percent, below the minimum of 50 %.
    let dir = service(
        &tmp.path().join("hog"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  quotas:\n    ramLimit: 67108864\n    tmpLimit: 104857600\n  alertRules:\n    ram:\n      minTimeout: 1s\n      minThreshold: 50\n      maxThreshold: 70\n",
        "#!/bin/sh\ndd if=/dev/zero of=/tmp/hog bs=1M count=48 2>/dev/null\necho hogging\nsleep 8\nrm /tmp/hog\necho released\nexec sleep 600\n",
    );
    node.install(&dir, "hog");
    node.apply(&instance("hog-0", "hog", "v1", 0, ""));
    node.active("hog-0");
    let raised = node.aosd.event("Instance", "hog-0", "AlertRaised", 30);
    assert_eq!(raised["spec"]["type"], "Warning");
    assert_eq!(raised["spec"]["source"], "alerts");
    let message = raised["spec"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("ram at ") && message.ends_with("%: at or above 70% for 1s"),
        "{message}"
    );
    let continues = node.aosd.event("Instance", "hog-0", "AlertContinues", 30);
    assert_eq!(continues["spec"]["message"], "ram still at or above 50%");
    let fell = node.aosd.event("Instance", "hog-0", "AlertFell", 30);
    assert_eq!(fell["spec"]["type"], "Normal");
    assert_eq!(fell["spec"]["message"], "ram below 50% for 1s");
    node.logs_show("hog-0", "released");
    node.aosd.ok(&["delete", "instance", "hog-0", "--wait"]);
    assert_eq!(node.containers().trim(), "");
}
