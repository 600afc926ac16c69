//! aosd and aosctl as a user runs them: the node reports itself, resources are applied,
//! watched, waited for and deleted, bad files change nothing, and only writers may write.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use aos_e2e::{Aosd, AosdOptions};

fn examples() -> String {
    format!("{}/../examples", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_node_reports_itself_with_its_runtimes() {
    let aosd = Aosd::start_with(AosdOptions {
        config: Some("[runtimes.boot]\nenabled = true\n[node]\ndmips = 12345\n".into()),
        ..Default::default()
    });
    aosd.wait_node_ready();
    let table = aosd.ok(&["get", "nodes"]);

    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("RUNTIMES"),
        "{table}"
    );
    // boot is enabled in the config, but nothing in this build runs it: not advertised.
    assert!(
        lines[1].starts_with("e2e-node ") && lines[1].contains(" container "),
        "{table}"
    );
    assert!(lines[1].contains("12345"), "{table}");
    let json: serde_json::Value =
        serde_json::from_str(&aosd.ok(&["get", "node", "e2e-node", "-o", "json"])).unwrap();
    let runtimes = json["status"]["runtimes"].as_array().unwrap();
    assert_eq!(runtimes.len(), 1, "{runtimes:?}");
    // UUID v3 of "container-e2e-node" in the OID namespace.
    assert_eq!(runtimes[0]["type"], "container");
    assert_eq!(runtimes[0]["maxInstances"], 0);
    assert_eq!(runtimes[0]["id"].as_str().unwrap().len(), 36);
    assert!(
        aosd.log().contains("no controller for it"),
        "{}",
        aosd.log()
    );
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

fn as_user(aosd: &Aosd, uid: u32, gid: u32, args: &[&str]) -> std::process::Output {
    aosd.aosctl_as(uid, gid)
        .args(args)
        .output()
        .expect("aosctl runs as another user")
}

#[test]
fn a_user_without_the_group_gets_permission_denied_from_every_write() {
    let aosd = Aosd::start_with(AosdOptions {
        args: vec![
            "--socket-mode".into(),
            "0666".into(),
            "--group".into(),
            "users".into(),
        ],
        ..Default::default()
    });
    // Other users cannot read a checkout that sits under a private directory.
    let file = aosd.public_file(std::path::Path::new(&format!(
        "{}/network.yaml",
        examples()
    )));
    let file = file.to_str().unwrap();
    let nobody = 65534;
    for args in [
        vec!["apply", "-f", file],
        vec!["apply", "--dry-run", "-f", file],
        vec!["delete", "node", "e2e-node"],
    ] {
        let out = as_user(&aosd, nobody, nobody, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded for nobody");
        assert!(err.contains("permission denied"), "{args:?}: {err}");
    }
    // Reads stay open, and nothing was written.
    let out = as_user(&aosd, nobody, nobody, &["get", "all", "-o", "name"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "node/e2e-node");
    // A member of the configured group may write.
    let users = 100;
    let out = as_user(&aosd, nobody, users, &["apply", "-f", file]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_user(&aosd, nobody, users, &["delete", "network", "demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_socket_is_private_by_default() {
    use std::os::unix::fs::PermissionsExt;
    let aosd = Aosd::start();
    let mode = std::fs::metadata(&aosd.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let out = as_user(&aosd, 65534, 65534, &["get", "nodes"]);
    assert!(!out.status.success(), "others cannot even connect");
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = aosctl::client::Client::connect(&aosd.socket).await.unwrap();
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = aosctl::client::Client::connect(&aosd.socket).await.unwrap();
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

#[test]
fn a_grpc_python_client_with_its_default_authority_is_served() {
    let aosd = Aosd::start();
    aosd.wait_node_ready();
    // grpc-python names the socket's path as the authority (not a valid URI authority).
    let script = format!(
        r#"
import grpc
ch = grpc.insecure_channel("unix:{}")
health = ch.unary_unary("/aosd.v1.Aosd/Health", request_serializer=lambda x: x, response_deserializer=lambda x: x)
print(health(b"", timeout=10))
get = ch.unary_unary("/aosd.v1.Aosd/Get", request_serializer=lambda x: x, response_deserializer=lambda x: x)
# GetRequest {{ kind: "node" (1), name: "e2e-node" (2) }}
print(get(b"\x0a\x04node\x12\x08e2e-node", timeout=10))
"#,
        aosd.socket.display()
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs (hack/setup.sh installs grpcio)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ok"), "{stdout}");
    assert!(
        stdout.contains("e2e-node") && stdout.contains("\"kind\""),
        "{stdout}"
    );
}

fn item_from(name: &str, archive: &str) -> String {
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: {name}\nspec:\n  itemId: {name}\n  version: \"1\"\n  source:\n    archive: {archive}\n"
    )
}

#[test]
fn local_archives_are_read_only_where_the_writer_may_name_them_and_never_quoted() {
    let allowed = tempfile::tempdir().unwrap();
    let aosd = Aosd::start_with(AosdOptions {
        args: vec![
            "--socket-mode".into(),
            "0666".into(),
            "--group".into(),
            "users".into(),
        ],
        config: Some(format!(
            "[images]\narchive_dirs = [\"{}\"]\n",
            allowed.path().display()
        )),
        ..Default::default()
    });
    let (nobody, users) = (65534, 100);
    let file = aosd.path().join("shadow.yaml");
    std::fs::write(&file, item_from("shadow", "/etc/shadow")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A writer that is not root: refused at once, by the API.
    let out = as_user(
        &aosd,
        nobody,
        users,
        &["apply", "-f", file.to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("outside images.archive_dirs"), "{err}");
    // Root may name it; the Item fails without quoting a byte of it.
    aosd.ok(&["apply", "-f", file.to_str().unwrap()]);
    let v = aosd.until("item", "shadow", 20, |v| v["status"]["phase"] == "Failed");
    let text = v.to_string();
    assert!(
        text.contains("is not a tar archive of an image layout"),
        "{text}"
    );
    let shadow = std::fs::read_to_string("/etc/shadow").unwrap();
    let first = shadow.lines().next().unwrap();
    assert!(!text.contains(&first[..first.len().min(12)]), "{text}");
}

#[test]
fn a_fifo_as_an_archive_fails_its_items_and_aosd_keeps_answering() {
    let mut aosd = Aosd::start();
    let fifo = aosd.path().join("pipe.tar");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    // More such Items than the controllers have workers.
    for i in 0..6 {
        let f = aosd.path().join(format!("fifo{i}.yaml"));
        std::fs::write(&f, item_from(&format!("fifo{i}"), fifo.to_str().unwrap())).unwrap();
        aosd.ok(&["apply", "-f", f.to_str().unwrap()]);
    }
    for i in 0..6 {
        let v = aosd.until("item", &format!("fifo{i}"), 20, |v| {
            v["status"]["phase"] == "Failed"
        });
        assert!(
            v.to_string()
                .contains("neither a regular file nor a directory"),
            "{v}"
        );
    }
    aosd.ok(&["health"]);
    let status = aosd.terminate();
    assert!(status.success(), "SIGTERM ends aosd: {status}");
}

#[test]
fn env_values_are_hidden_from_readers_who_may_not_write() {
    let aosd = Aosd::start_with(AosdOptions {
        args: vec![
            "--socket-mode".into(),
            "0666".into(),
            "--group".into(),
            "users".into(),
        ],
        ..Default::default()
    });
    aosd.ok(&["apply", "-f", &format!("{}/hello.yaml", examples())]);
    let (nobody, users) = (65534, 100);
    let name = "state-writer-demo-0";
    for args in [
        vec!["get", "instance", name, "-o", "json"],
        vec!["get", "instances", "-o", "json"],
        vec!["describe", "instance", name],
    ] {
        let reader =
            String::from_utf8_lossy(&as_user(&aosd, nobody, nobody, &args).stdout).into_owned();
        assert!(reader.contains("GREETING"), "{args:?}: {reader}");
        assert!(
            !reader.contains("hello from instance 0"),
            "{args:?}: {reader}"
        );
        assert!(reader.contains("redacted"), "{args:?}: {reader}");
        let writer =
            String::from_utf8_lossy(&as_user(&aosd, nobody, users, &args).stdout).into_owned();
        assert!(
            writer.contains("hello from instance 0"),
            "{args:?}: {writer}"
        );
    }
    // A watch too: what it prints after a change of the value.
    let mut w = aosd
        .aosctl_as(nobody, nobody)
        .args(["get", "instances", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = w.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let changed = aosd.public_file(std::path::Path::new(&format!("{}/hello.yaml", examples())));
    let text = std::fs::read_to_string(&changed).unwrap();
    std::fs::write(
        &changed,
        text.replace("hello from instance 0", "hello again"),
    )
    .unwrap();
    aosd.ok(&["apply", "-f", changed.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_secs(1));
    w.kill().unwrap();
    w.wait().unwrap();
    let out = reader.join().unwrap();
    assert!(
        !out.contains("hello again") && out.contains("redacted"),
        "{out}"
    );
}

#[test]
fn an_error_about_a_huge_name_keeps_its_code_over_raw_grpc() {
    let aosd = Aosd::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(async {
        let c = aosctl::client::Client::connect(&aosd.socket).await.unwrap();
        let obj: aos_api::DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": "Network",
            "metadata": {"name": "n".repeat(100_000)}, "spec": {}
        }))
        .unwrap();
        c.apply(&obj, false).await.unwrap_err()
    });
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    assert!(e.to_string().len() < 4096, "{}", e.to_string().len());
    // A 20 MB annotation never reaches the store; the store stays small.
    let e = rt.block_on(async {
        let c = aosctl::client::Client::connect(&aosd.socket).await.unwrap();
        let mut obj: aos_api::DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": "Network",
            "metadata": {"name": "n"}, "spec": {}
        }))
        .unwrap();
        obj.metadata
            .annotations
            .insert("blob".into(), "x".repeat(20 << 20));
        c.apply(&obj, false).await.unwrap_err()
    });
    assert_eq!(e.code(), Some(tonic::Code::InvalidArgument), "{e}");
    assert!(e.to_string().contains("metadata.annotations"), "{e}");
    let store = std::fs::metadata(aosd.path().join("data/store.redb"))
        .unwrap()
        .len();
    assert!(store < 8 << 20, "{store} bytes");
}
