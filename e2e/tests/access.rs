//! Who may do what through the API: peer credentials decide writes, the socket's mode decides
//! reads, readers without write access see no secrets, local archives are read only where the
//! writer may name them, and clients of other languages are served.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::BufReader;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use aos_e2e::{examples, Aosd};

fn as_user(aosd: &Aosd, uid: u32, gid: u32, args: &[&str]) -> std::process::Output {
    aosd.run_as(uid, gid, args)
}

#[test]
fn a_user_without_the_group_gets_permission_denied_from_every_write() {
    let aosd = Aosd::with_writers_group();
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
    let aosd = Aosd::with_writers_group_and(Some(format!(
        "[images]\narchive_dirs = [\"{}\"]\n",
        allowed.path().display()
    )));
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
    let aosd = Aosd::with_writers_group();
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
    let e = aosd.with_client(|c| async move {
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
    let e = aosd.with_client(|c| async move {
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
