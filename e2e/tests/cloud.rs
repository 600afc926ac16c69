//! The cloud connector end to end against the test cloud (WebSockets over TLS, client
//! certificates from the test kit) and a real registry, containerd and aosd: a desired status
//! becomes pulled Items and active Instances that the unit status reports; fewer instances
//! and a removed item go; a dropped connection is resumed with a full status and nothing
//! doubled; aosd restarted while the cloud is away runs the same instances and reconnects when
//! it is back; alerts and usage reach the cloud; hostile messages change nothing; a field set
//! here and by the cloud is a conflict; offlineTTL stops and starts instances.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aos_e2e::cloud::TestCloud;
use aos_e2e::node::{service, Node};
use aos_testkit::Registry;
use serde_json::{json, Value};

/// Packs a service and pushes it as `<registry>/aos/<id>:1.0.0`.
fn publish(node: &Node, registry: &Registry, dir: &Path, id: &str) {
    let host = registry.host();
    node.publish(dir, &host, &format!("{host}/aos/{id}:1.0.0"));
}

fn desired(instances: &[(&str, u64)]) -> String {
    let items: Vec<Value> = instances
        .iter()
        .map(|(id, _)| json!({"item": {"id": id, "type": "service"}, "version": "1.0.0"}))
        .collect();
    let insts: Vec<Value> = instances
        .iter()
        .map(|(id, n)| json!({"item": {"id": id}, "subject": {"id": "kiosk"}, "numInstances": n}))
        .collect();
    json!({"messageType": "desiredStatus", "items": items, "instances": insts}).to_string()
}

fn is_status(m: &Value, delta: bool) -> bool {
    m["messageType"] == "unitStatus" && m["isDeltaInfo"] == delta
}

/// The states the unit status gives the instances of `item`.
fn states(m: &Value, item: &str) -> Vec<String> {
    m["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|g| g["item"]["id"] == item)
        .flat_map(|g| g["instances"].as_array().cloned().unwrap_or_default())
        .map(|i| i["state"].as_str().unwrap_or("").to_string())
        .collect()
}

fn names(node: &Node) -> Vec<String> {
    let out = node.aosd.ok(&["get", "instances", "-o", "name"]);
    out.lines().map(str::to_string).collect()
}

fn setup(tmp: &Path) -> (Registry, TestCloud, Node) {
    let registry = Registry::start();
    let cloud = TestCloud::start(tmp);
    let node = Node::start(&format!(
        "[images]\ninsecure_registries = [\"{}\"]\n{}",
        registry.host(),
        cloud.config(&format!("{}/aos", registry.host()))
    ));
    (registry, cloud, node)
}

#[test]
fn the_cloud_drives_the_node_which_reports_resumes_and_keeps_running_while_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let (registry, mut cloud, mut node) = setup(tmp.path());
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 600\n",
    );
    publish(&node, &registry, &web, "web");
    let hog = service(
        &tmp.path().join("hog"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  quotas:\n    ramLimit: 67108864\n    tmpLimit: 104857600\n  alertRules:\n    ram:\n      minTimeout: 1s\n      minThreshold: 50\n      maxThreshold: 70\n",
        "#!/bin/sh\ndd if=/dev/zero of=/tmp/hog bs=1M count=48 2>/dev/null\nexec sleep 600\n",
    );
    publish(&node, &registry, &hog, "hog");
    // On connect: a full status, empty.
    let full = cloud.wait(0, 30, |m| is_status(m, false));
    assert_eq!(full["items"], json!([]));

    cloud.send(&desired(&[("web", 3), ("hog", 1)]), 30);
    for n in ["web-kiosk-0", "web-kiosk-1", "web-kiosk-2", "hog-kiosk-0"] {
        node.active(n);
    }
    let seen = cloud.wait(0, 30, |m| {
        is_status(m, true) && states(m, "web") == ["active", "active", "active"]
    });
    assert!(seen["items"].as_array().is_some());
    // The hog's alert reaches the cloud.
    let alert = cloud.wait(0, 30, |m| m["messageType"] == "alerts");
    let a = &alert["items"][0];
    assert_eq!(a["tag"], "instanceQuotaAlert", "{alert:#}");
    assert_eq!(a["instance"]["itemId"], "hog");
    assert_eq!(a["parameter"], "ram");
    assert_eq!(a["state"], "raise");

    // Usage, averaged over the window, reaches the cloud.
    let m = cloud.wait(0, 30, |m| {
        m["messageType"] == "monitoringData"
            && m["nodes"][0]["instances"]
                .as_array()
                .is_some_and(|a| a.len() == 4)
    });
    let n = &m["nodes"][0];
    assert_eq!(n["nodeId"], "e2e-node");
    assert!(n["nodeMonitoring"]["ram"].as_u64() > Some(0), "{m:#}");
    assert!(n["instances"][0]["ram"].as_u64() > Some(0), "{m:#}");

    // Hostile or malformed messages are refused with a reason and change nothing.
    let before = names(&node);
    cloud.send(&desired(&[("web", 100_000)]), 30);
    cloud.send(r#"{"messageType": "desiredStatus", "items": 7}"#, 30);
    cloud.send(r#"{"messageType": "rebootUnit"}"#, 30);
    cloud.send(
        &format!(
            r#"{{"messageType": "desiredStatus", "subjects": ["{}"]}}"#,
            "x".repeat(5 << 20)
        ),
        30,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let log = loop {
        let log = node.aosd.log();
        let refused = log.matches("desired status refused").count()
            + log.matches("message from the cloud refused").count();
        if (refused >= 3 && log.contains("Message too long"))
            || std::time::Instant::now() > deadline
        {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        log.contains("100001 instances wanted") || log.contains("100000 instances wanted"),
        "{log}"
    );
    assert!(log.contains("unknown messageType \"rebootUnit\""), "{log}");
    assert!(log.contains("invalid type"), "{log}");
    assert!(
        log.contains("Message too long"),
        "the 5 MiB message ends the session: {log}"
    );
    assert_eq!(names(&node), before);

    // 3 → 1: two go.
    cloud.send(&desired(&[("web", 1), ("hog", 1)]), 30);
    let skip = cloud.received().len();
    cloud.wait(skip, 30, |m| {
        is_status(m, true) && states(m, "web") == ["active"]
    });
    assert_eq!(
        names(&node),
        ["instance/hog-kiosk-0", "instance/web-kiosk-0"]
    );

    // A dropped connection: a new session, a full status again, nothing doubled.
    let (skip, sessions) = (cloud.received().len(), cloud.sessions());
    cloud.drop_connection();
    let again = cloud.wait(skip, 30, |m| is_status(m, false));
    assert_eq!(cloud.sessions(), sessions + 1);
    assert_eq!(states(&again, "web"), ["active"]);
    assert_eq!(names(&node).len(), 2);

    // The cloud away, aosd killed and started again: the same task runs (adopted).
    let pid = node.active("web-kiosk-0")["status"]["pid"].clone();
    cloud.go_away();
    node.aosd.crash_and_restart();
    assert_eq!(node.active("web-kiosk-0")["status"]["pid"], pid);
    let skip = cloud.received().len();
    cloud.resume();
    let back = cloud.wait(skip, 30, |m| is_status(m, false));
    assert_eq!(states(&back, "web"), ["active"]);

    // The item removed: its instance and the item go, and the cloud hears it.
    let skip = cloud.received().len();
    cloud.send(&desired(&[("hog", 1)]), 30);
    cloud.wait(skip, 60, |m| {
        is_status(m, true)
            && m["items"].as_array().is_some_and(|i| {
                i.iter()
                    .any(|i| i["item"]["id"] == "web" && i["state"] == "removed")
            })
    });
    node.aosd.ok(&[
        "wait",
        "instance/web-kiosk-0",
        "--for=delete",
        "--timeout=30s",
    ]);
    assert_eq!(names(&node), ["instance/hog-kiosk-0"]);
    cloud.send(&desired(&[]), 30);
    for o in ["instance/hog-kiosk-0", "item/hog-1.0.0", "item/web-1.0.0"] {
        node.aosd.ok(&["wait", o, "--for=delete", "--timeout=60s"]);
    }
    assert_eq!(node.containers().trim(), "");
}

#[test]
fn fields_set_here_and_by_the_cloud_are_kept_apart_and_a_clash_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (registry, cloud, node) = setup(tmp.path());
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 600\n",
    );
    publish(&node, &registry, &web, "web");
    let with_priority = |p: u64| {
        json!({"messageType": "desiredStatus",
               "items": [{"item": {"id": "web"}, "version": "1.0.0"}],
               "instances": [{"item": {"id": "web"}, "subject": {"id": "kiosk"}, "numInstances": 1, "priority": p}]})
        .to_string()
    };
    cloud.send(&with_priority(10), 30);
    node.active("web-kiosk-0");
    // Here: an environment variable (a field the cloud does not set).
    let local = |priority: u64| {
        format!(
            "apiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: web-kiosk-0\nspec:\n  itemId: web\n  version: 1.0.0\n  subjectId: kiosk\n  index: 0\n  runtime: container\n  priority: {priority}\n  env:\n  - name: MODE\n    value: local\n"
        )
    };
    node.apply(&local(10));
    cloud.send(&with_priority(20), 30);
    let v = node.aosd.until("instance", "web-kiosk-0", 30, |v| {
        v["spec"]["priority"] == 20
    });
    assert_eq!(v["spec"]["env"][0]["value"], "local", "{v:#}");
    assert!(v["metadata"]["annotations"]
        .get("aos.edge/cloud-conflicts")
        .is_none());
    // Here: the priority the cloud sets: a conflict, reported, and what was set here stays.
    node.apply(&local(5));
    cloud.send(&with_priority(30), 30);
    let v = node.aosd.until("instance", "web-kiosk-0", 30, |v| {
        v["metadata"]["annotations"]["aos.edge/cloud-conflicts"].is_string()
    });
    assert_eq!(v["spec"]["priority"], 5);
    let why = v["metadata"]["annotations"]["aos.edge/cloud-conflicts"]
        .as_str()
        .unwrap();
    assert_eq!(why, "spec.priority: set to 5 here, the cloud wants 30");
    let e = node
        .aosd
        .event("Instance", "web-kiosk-0", "FieldConflict", 10);
    assert_eq!(e["spec"]["type"], "Warning");
}

#[test]
fn an_item_with_an_offline_ttl_stops_when_the_cloud_is_away_too_long_and_starts_when_it_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let (registry, mut cloud, node) = setup(tmp.path());
    let web = service(
        &tmp.path().join("web"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n  offlineTTL: 3s\n",
        "#!/bin/sh\nexec sleep 600\n",
    );
    publish(&node, &registry, &web, "web");
    cloud.send(&desired(&[("web", 1)]), 30);
    node.active("web-kiosk-0");
    let node_name = "e2e-node";
    let connected = |v: &Value| aos_e2e::condition(v, "CloudConnected")["status"].clone();
    let n = node
        .aosd
        .until("node", node_name, 10, |v| connected(v) == "True");
    assert_eq!(
        aos_e2e::condition(&n, "CloudConnected")["reason"],
        "Connected"
    );
    // Away: within the TTL the instance runs on, then it stops with the reason.
    cloud.go_away();
    node.aosd
        .until("node", node_name, 10, |v| connected(v) == "False");
    let v = node.until_instance("web-kiosk-0", 30, |v| v["status"]["state"] == "inactive");
    let running = aos_e2e::condition(&v, "Running");
    assert_eq!(running["reason"], "OfflineTTLExpired", "{v:#}");
    assert_eq!(node.containers().trim(), "", "its task is stopped");
    node.aosd
        .event("Instance", "web-kiosk-0", "OfflineTTLExpired", 10);
    // Back: it starts again.
    cloud.resume();
    node.active("web-kiosk-0");
    cloud.send(&desired(&[]), 30);
    node.aosd.ok(&[
        "wait",
        "instance/web-kiosk-0",
        "--for=delete",
        "--timeout=30s",
    ]);
}

#[test]
fn a_component_item_from_the_cloud_updates_the_configured_boot_slot() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let cloud = TestCloud::start(tmp.path());
    let host = registry.host();
    let aosd = aos_e2e::Aosd::start_with(aos_e2e::AosdOptions {
        config: Some(format!(
            "{}boot_item = \"os\"\n[images]\ninsecure_registries = [\"{host}\"]\n[runtimes.boot]\nenabled = true\nsimulate = true\n[runtimes.boot.health]\nprobation_secs = 1\ninterval_secs = 1\ntimeout_secs = 5\n",
            cloud.config(&format!("{host}/aos"))
        )),
        ..Default::default()
    });
    aosd.until("bootslot", "e2e-node", 30, |v| {
        v["status"]["phase"] == "Idle"
    });
    let (archive, _) = aosd.pack_boot("2.0", true, 1 << 20);
    let reference = format!("{host}/aos/os:2.0");
    aosd.ok(&[
        "push",
        archive.to_str().unwrap(),
        &reference,
        "--insecure",
        &host,
    ]);
    cloud.send(
        &json!({"messageType": "desiredStatus",
                "items": [{"item": {"id": "os", "type": "component"}, "version": "2.0"}]})
        .to_string(),
        30,
    );
    let done = aosd.until("bootslot", "e2e-node", 90, |v| {
        v["status"]["main"] == "b" && v["status"]["phase"] == "Idle"
    });
    assert_eq!(done["spec"]["item"]["version"], "2.0");
    assert_eq!(done["status"]["slots"][1]["version"], "2.0");
    cloud.wait(0, 30, |m| {
        is_status(m, true)
            && m["items"].as_array().is_some_and(|i| {
                i.iter()
                    .any(|i| i["item"]["id"] == "os" && i["state"] == "installed")
            })
    });
}
