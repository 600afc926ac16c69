//! aosd and aosctl as a user runs them: the node reports itself, resources are applied,
//! watched, waited for and deleted, bad files change nothing, apply merges as kubectl's does,
//! a delete of several answers for each, and a closed stdout is a normal end. Who may do what
//! is in access.rs.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use aos_e2e::{examples, Aosd, AosdOptions};

#[test]
fn the_node_reports_itself_with_its_runtimes() {
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(
            "[runtimes.boot]\nenabled = true\nsimulate = true\n[node]\ndmips = 12345\n".into(),
        ),
        ..Default::default()
    });
    aosd.wait_node_ready();
    let table = aosd.ok(&["get", "nodes"]);

    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("RUNTIMES"),
        "{table}"
    );
    // Both enabled runtimes are advertised, container first.
    assert!(
        lines[1].starts_with("e2e-node ") && lines[1].contains("container"),
        "{table}"
    );
    assert!(lines[1].contains("12345"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&aosd.ok(&["get", "node", "e2e-node", "-o", "json"])).unwrap();
    let runtimes = json["status"]["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 2, "{runtimes:?}");
    // UUID v3 of "container-e2e-node" in the OID namespace.
    assert_eq!(runtimes[0]["type"], "container");
    assert_eq!(runtimes[0]["maxInstances"], 0);
    assert_eq!(runtimes[0]["id"].as_str().unwrap().len(), 36);
    assert_eq!(runtimes[1]["type"], "boot");
    assert_eq!(runtimes[1]["maxInstances"], 1);
    assert_eq!(json["status"]["nodeId"], "e2e-node");
    assert!(json["status"]["totalRam"].as_u64().unwrap() > 0);
    assert!(
        json["status"]["usage"]["partitions"][0]["totalSize"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn examples_are_applied_watched_waited_for_and_deleted() {
    let aosd = Aosd::start();
    let out = aosd.ok(&["apply", "-f", &examples()]);
    assert!(
        out.contains("instance/state-writer-demo-0 created"),
        "{out}"
    );
    assert!(out.contains("network/demo created"), "{out}");
    let again = aosd.ok(&["apply", "-f", &examples()]);
    assert!(again.lines().all(|l| l.ends_with("unchanged")), "{again}");

    // A watcher sees the change and the deletion.
    let mut watcher = aosd
        .aosctl()
        .args(["get", "instances", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // The initial list comes first.
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "instance/state-writer-demo-0"
    );
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "instance/state-writer-demo-1"
    );
    let deleted = aosd.ok(&["delete", "instance", "state-writer-demo-1"]);
    assert_eq!(deleted.trim(), "instance/state-writer-demo-1 deleted");
    assert_eq!(
        lines.next().unwrap().unwrap(),
        "instance/state-writer-demo-1"
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();

    let left = aosd.ok(&["get", "inst", "-o", "name"]);
    assert_eq!(left.trim(), "instance/state-writer-demo-0");
    assert!(aosd
        .ok(&[
            "wait",
            "instance/state-writer-demo-1",
            "--for=delete",
            "--timeout=5s"
        ])
        .contains("condition met"));
    let out = aosd.run(&[
        "wait",
        "instance/state-writer-demo-0",
        "--for=condition=Ready",
        "--timeout=200ms",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("timed out"));
    // A condition of an object that does not exist fails at once; --for=create waits for it.
    let out = aosd.run(&[
        "wait",
        "instance/state-writer-demo-1",
        "--for=condition=Ready",
        "--timeout=5s",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let waiter = aosd
        .aosctl()
        .args([
            "wait",
            "instance/state-writer-demo-1",
            "--for=create",
            "--timeout=30s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    aosd.ok(&["apply", "-f", &examples()]);
    let waited = waiter.wait_with_output().unwrap();
    assert!(waited.status.success());
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));
    let desc = aosd.ok(&["describe", "network", "demo"]);
    assert!(desc.contains("Name:         demo"), "{desc}");
}

#[test]
fn a_malformed_file_names_the_field_and_line_and_changes_nothing() {
    // No usage refresh during the test, so that the revision only moves if the apply wrote.
    let aosd = Aosd::start_with(AosdOptions {
        config: Some("[node]\nusage_interval = \"1h\"\n".into()),
        ..Default::default()
    });
    aosd.wait_node_ready();
    let before = aosd.ok(&["health"]);
    let bad = aosd.path().join("bad.yaml");
    let text = std::fs::read_to_string(format!("{}/hello.yaml", examples())).unwrap();
    // The first documents are fine; the last has a misspelt field.
    let broken = text.replacen("  index: 1", "  indx: 1", 1);
    assert_ne!(text, broken);
    std::fs::write(&bad, broken).unwrap();
    let out = aosd.run(&["apply", "-f", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l == "  index: 1").unwrap() + 1;
    assert!(
        err.contains(&format!("bad.yaml:{line}: spec.indx: unknown field `indx`")),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    let listed = aosd.run(&["get", "all", "-o", "name"]);
    let names = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(names.trim(), "node/e2e-node", "nothing but the node exists");
    assert_eq!(aosd.ok(&["health"]), before, "the revision did not move");

    // A rule violation is located too, and a server-side refusal also leaves everything as it was.
    let bad_subnet = aosd.path().join("net.json");
    std::fs::write(
        &bad_subnet,
        "{\"apiVersion\": \"aos.edge/v1alpha1\", \"kind\": \"Network\",\n \"metadata\": {\"name\": \"n\"},\n \"spec\": {\"vlanId\": 5000}}\n",
    )
    .unwrap();
    let out = aosd.run(&["apply", "-f", bad_subnet.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("net.json:3: spec.vlanId: must be between 1 and 4094"),
        "{err}"
    );
}

#[test]
fn a_second_aosd_on_the_same_socket_is_refused_and_the_first_keeps_serving() {
    let aosd = Aosd::start();
    let out = std::process::Command::new(aos_e2e::bin("aosd"))
        .args(["--config", "/dev/null", "--data-dir"])
        .arg(aosd.path().join("other"))
        .arg("--socket")
        .arg(&aosd.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another process is serving"));
    aosd.ok(&["health"]);
}

#[test]
fn objects_survive_a_restart_and_sigterm_stops_cleanly() {
    let mut aosd = Aosd::start();
    aosd.ok(&["apply", "-f", &examples()]);
    let socket = aosd.socket.clone();
    let status = aosd.terminate();
    assert!(status.success(), "aosd exits 0 on SIGTERM: {status}");
    assert!(!socket.exists(), "the socket is removed on exit");
    let status = aosd.restart();
    assert!(status.success());
    let names = aosd.ok(&["get", "all", "-o", "name"]);
    assert!(
        names.contains("instance/state-writer-demo-0") && names.contains("network/demo"),
        "{names}"
    );
    assert!(aosd.log().contains("API ready"));
}

#[test]
fn apply_keeps_labels_others_set_and_diff_shows_only_what_files_set() {
    let aosd = Aosd::start();
    let file = format!("{}/network.yaml", examples());
    aosd.ok(&["apply", "-f", &file]);
    // Another writer (a controller, the cloud) labels the object through the API.
    aosd.with_client(|c| async move {
        let mut live = c.get("Network", "demo").await.unwrap();
        live.metadata
            .labels
            .insert("owner".into(), "operations".into());
        c.apply(&live, false).await.unwrap();
    });
    let out = aosd.run(&["diff", "-f", &file]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "nothing the file sets differs: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let again = aosd.ok(&["apply", "-f", &file]);
    assert!(again.contains("network/demo unchanged"), "{again}");
    let labels = aosd.json("network", "demo")["metadata"]["labels"].clone();
    assert_eq!(labels["owner"], "operations", "{labels}");
    assert_eq!(labels["app.kubernetes.io/part-of"], "aos-demo", "{labels}");

    // A change of the file shows as that change alone, and applying it keeps the other label
    // but drops the one the file no longer names.
    let changed = aosd.path().join("network.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &changed,
        text.replace("allowOutside: false", "allowOutside: true")
            .replace("    app.kubernetes.io/part-of: aos-demo", "    tier: demo"),
    )
    .unwrap();
    let out = aosd.run(&["diff", "-f", changed.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&out.stdout);
    assert!(diff.contains("+  allowOutside: true"), "{diff}");
    for noise in [
        "resourceVersion",
        "status",
        "uid",
        "generation",
        "last-applied",
    ] {
        assert!(!diff.contains(noise), "{noise} in {diff}");
    }
    let dry = aosd.ok(&["apply", "--dry-run", "-f", changed.to_str().unwrap()]);
    assert!(dry.contains("network/demo configured (dry run)"), "{dry}");
    aosd.ok(&["apply", "-f", changed.to_str().unwrap()]);
    let labels = aosd.json("network", "demo")["metadata"]["labels"].clone();
    assert_eq!(
        labels,
        serde_json::json!({"owner": "operations", "tier": "demo"}),
        "the file's old label went, the other writer's stayed"
    );
}

#[test]
fn an_object_being_deleted_shows_terminating_and_takes_no_apply() {
    let aosd = Aosd::start();
    let file = format!("{}/network.yaml", examples());
    aosd.ok(&["apply", "-f", &file]);
    // A finalizer nobody removes here (no network controller runs without containerd) keeps
    // the object in its terminating state.
    aosd.with_client(|c| async move {
        let mut live = c.get("Network", "demo").await.unwrap();
        live.metadata.finalizers.push("e2e/hold".into());
        c.apply(&live, false).await.unwrap();
    });
    aosd.ok(&["delete", "network", "demo"]);
    let desc = aosd.ok(&["describe", "network", "demo"]);
    assert!(
        desc.lines()
            .any(|l| l.contains("Ready") && l.contains("False") && l.contains("Terminating")),
        "{desc}"
    );
    let out = aosd.run(&[
        "wait",
        "network/demo",
        "--for=condition=Ready=False",
        "--timeout=5s",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is being deleted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = aosd.run(&["apply", "-f", &file]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("network/demo is being deleted"), "{err}");
}

#[test]
fn a_delete_of_several_answers_each_in_the_order_given_and_a_missing_one_fails_alone() {
    let aosd = Aosd::start();
    let file = format!("{}/network.yaml", examples());
    aosd.ok(&["apply", "-f", &file]);
    // Copies of the example under other names; one held by a finalizer nobody removes here
    // (no network controller runs without containerd).
    aosd.with_client(|c| async move {
        let demo = c.get("Network", "demo").await.unwrap();
        for (name, hold) in [("second", false), ("held", true)] {
            let mut o = demo.clone();
            o.metadata = aos_api::ObjectMeta {
                name: name.into(),
                finalizers: if hold {
                    vec!["e2e/hold".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            };
            o.status = serde_json::Value::Null;
            c.apply(&o, false).await.unwrap();
        }
    });
    let names = ["network/demo", "network/held", "network/second"];
    let args = ["delete", "network", "second", "missing", "held", "demo"];

    let dry: Vec<&str> = [&args[..], &["--dry-run"]].concat();
    let out = aosd.run(&dry);
    assert_eq!(out.status.code(), Some(1), "the missing one fails");
    let all = aosd.ok(&["get", "networks", "-o", "name"]);
    assert_eq!(
        all.lines().collect::<Vec<_>>(),
        names,
        "a dry run deletes nothing"
    );

    let out = aosd.run(&args);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "network/second deleted",
            "network/held marked for deletion; waiting for finalizers: e2e/hold",
            "network/demo deleted",
        ]
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("network/missing") && stderr.contains("not found"),
        "{stderr}"
    );
    let all = aosd.ok(&["get", "networks", "-o", "name"]);
    assert_eq!(all.trim(), "network/held");
    // Over the API, a target of an unknown kind fails alone too.
    let t = |kind: &str, name: &str| (kind.to_string(), name.to_string());
    let answers = aosd.with_client(|c| async move {
        c.delete_many(&[t("Gadget", "x"), t("Network", "held")], true)
            .await
            .unwrap()
    });
    let err = answers[0].as_ref().unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    assert!(answers[1].as_ref().unwrap().is_some(), "held, still marked");
    let out = aosd.run(&["delete", "network", "missing", "held", "--ignore-not-found"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn get_kind_slash_name_shows_that_object_or_fails() {
    let aosd = Aosd::start();
    aosd.wait_node_ready();
    let out = aosd.ok(&["get", "node/e2e-node", "-o", "name"]);
    assert_eq!(out.trim(), "node/e2e-node");
    let out = aosd.run(&["get", "node/nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = aosd.run(&["get", "node/e2e-node", "network/nope", "-o", "name"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "node/e2e-node");
}

#[test]
fn a_closed_stdout_ends_every_command_quietly_with_exit_0() {
    let aosd = Aosd::start();
    aosd.wait_node_ready();
    for args in [
        vec!["completion", "fish"],
        vec!["get", "nodes", "-o", "yaml"],
        vec!["get", "all"],
        vec!["describe", "node", "e2e-node"],
    ] {
        // The reader is gone before aosctl writes a byte: every write fails with EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = aosd
            .aosctl()
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_table_watch_prints_a_row_only_when_a_printed_column_changes() {
    // No containerd here: nothing but these applies changes the Instance.
    let aosd = Aosd::start();
    let file = aosd.path().join("inst.yaml");
    let write = |version: &str, note: &str| {
        std::fs::write(
            &file,
            format!(
                "apiVersion: aos.edge/v1alpha1\nkind: Instance\nmetadata:\n  name: w-0\n  annotations:\n    note: \"{note}\"\nspec:\n  itemId: w\n  version: \"{version}\"\n  subjectId: s\n  index: 0\n  runtime: container\n"
            ),
        )
        .unwrap();
        aosd.ok(&["apply", "-f", file.to_str().unwrap()]);
    };
    write("1.0.0", "a");
    let mut watcher = aosd
        .aosctl()
        .args(["get", "instances", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    let next = || rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(next().starts_with("NAME"));
    assert!(next().contains("1.0.0"));
    // An annotation is not a column: no row. A new version is: one row.
    write("1.0.0", "b");
    write("2.0.0", "b");
    let row = next();
    assert!(
        row.contains("2.0.0"),
        "the unchanged row was printed again: {row}"
    );
    watcher.kill().unwrap();
    watcher.wait().unwrap();
}
