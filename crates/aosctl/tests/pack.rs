//! `aosctl pack`: reproducible archives that standard tools and aosd's own pipeline read, every
//! config field in its place, and config errors that name the key and the line.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aosctl::pack::{pack, parse_config, PackError};

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/services")
        .join(name)
}

#[test]
fn packing_the_same_folder_twice_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let pa = pack(&example("state-writer"), &a).unwrap();
    let pb = pack(&example("state-writer"), &b).unwrap();
    assert_eq!(pa.manifest_digest, pb.manifest_digest);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

fn unpack_archive(tar: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    tar::Archive::new(std::fs::File::open(tar).unwrap())
        .unpack(to)
        .unwrap();
}

#[test]
fn skopeo_and_umoci_read_the_archive() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("svc.tar");
    pack(&example("state-writer"), &out).unwrap();
    let layout = dir.path().join("layout");
    unpack_archive(&out, &layout);
    let inspect = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}", layout.display()))
        .output()
        .unwrap();
    assert!(
        inspect.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&inspect.stderr)
    );
    // umoci wants a tag: name the single manifest.
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["annotations"] =
        serde_json::json!({"org.opencontainers.image.ref.name": "1"});
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let bundle = dir.path().join("bundle");
    let st = Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:1", layout.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "umoci: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    let script = bundle.join("rootfs/usr/bin/state-writer.sh");
    assert!(std::fs::read_to_string(&script)
        .unwrap()
        .contains("/state.dat"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&script).unwrap().permissions().mode() & 0o777,
        0o755
    );
}

#[tokio::test]
async fn aosd_pipeline_reads_the_archive_and_finds_the_item_config() {
    use aos_image::source::{self, SourceConfig, SourceSpec};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("svc.tar");
    let p = pack(&example("http-hello"), &out).unwrap();
    let src = source::open(&SourceSpec::Archive(out), &SourceConfig::default())
        .await
        .unwrap();
    let r = aos_image::pipeline::resolve(&*src, "linux", "x86_64", None)
        .await
        .unwrap();
    assert_eq!(r.manifest_digest, p.manifest_digest);
    let item = r.item_config.unwrap();
    assert_eq!(item["hostname"], "hello");
    assert_eq!(item["exposedPorts"][0], "8080/tcp");
    assert!(item["allowedConnections"]["state-writer/8080/tcp"].is_object());
    assert_eq!(item["quotas"]["ramLimit"], 33554432);
    let run = r.config.config.unwrap();
    assert_eq!(
        run.cmd.unwrap(),
        ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
    );
}

#[test]
fn every_config_field_lands_in_the_image_config_or_the_item_config() {
    let text = r#"
publisher: {author: me}
build: {os: linux, arch: arm64}
configuration:
  entrypoint: /bin/sh -c
  cmd: ["run"]
  workingDir: /app
  env: {A: "1"}
  hostname: h
  exposedPorts: ["80", "53/udp"]
  allowedConnections: ["other/443/tcp"]
  quotas: {cpuDMIPSLimit: 1, ramLimit: 2, pidsLimit: 3, noFileLimit: 4, tmpLimit: 5, stateLimit: 6,
           storageLimit: 7, uploadSpeed: 8, downloadSpeed: 9, uploadLimit: 10, downloadLimit: 11}
  requestedResources: {cpu: 1, ram: 2, storage: 3, state: 4}
  runParameters: {startInterval: PT10S, startBurst: 2, restartInterval: 3}
  sysctl: {net.ipv4.ip_forward: "1"}
  offlineTTL: 1h
  skipResourceLimits: true
  balancingPolicy: disabled
  runtimes: [crun]
  resources: [{name: camera}]
  permissions: {vis: {"*": rw}}
  alertRules: {ram: {minTimeout: 1s, minThreshold: 90, maxThreshold: 95}}
  rootfs: own
"#;
    let cfg = parse_config(text, "config.yaml").unwrap();
    let image = aosctl::pack::image_config(&cfg, "sha256:x");
    assert_eq!(image["architecture"], "arm64");
    assert_eq!(
        image["config"]["Entrypoint"],
        serde_json::json!(["/bin/sh", "-c"])
    );
    assert_eq!(image["config"]["Cmd"], serde_json::json!(["run"]));
    assert_eq!(image["config"]["Env"], serde_json::json!(["A=1"]));
    assert_eq!(image["config"]["WorkingDir"], "/app");
    assert!(image["config"]["ExposedPorts"]["80/tcp"].is_object());
    assert!(image["config"]["ExposedPorts"]["53/udp"].is_object());
    let item = aosctl::pack::item_config(&cfg);
    assert_eq!(item["author"], "me");
    assert_eq!(item["hostname"], "h");
    for (k, v) in [
        ("cpuDMIPSLimit", 1),
        ("ramLimit", 2),
        ("pidsLimit", 3),
        ("noFileLimit", 4),
        ("tmpLimit", 5),
        ("stateLimit", 6),
        ("storageLimit", 7),
        ("uploadSpeed", 8),
        ("downloadSpeed", 9),
        ("uploadLimit", 10),
        ("downloadLimit", 11),
    ] {
        assert_eq!(item["quotas"][k], v, "{k}");
    }
    assert_eq!(item["requestedResources"]["state"], 4);
    assert_eq!(item["runParameters"]["startInterval"], "10s");
    assert_eq!(item["runParameters"]["startBurst"], 2);
    assert_eq!(item["runParameters"]["restartInterval"], "3s");
    assert_eq!(item["sysctl"]["net.ipv4.ip_forward"], "1");
    assert_eq!(item["offlineTTL"], "1h");
    assert_eq!(item["skipResourceLimits"], true);
    assert_eq!(item["balancingPolicy"], "disabled");
    assert_eq!(item["runtimes"][0], "crun");
    assert_eq!(
        item["resources"][0],
        serde_json::json!({"name": "camera", "mode": "rw"})
    );
    assert_eq!(item["permissions"]["vis"]["*"], "rw");
    assert_eq!(item["alertRules"]["ram"]["maxThreshold"], 95);
    assert_eq!(item["rootfs"], "own");
    assert!(item["allowedConnections"]["other/443/tcp"].is_object());
}

#[test]
fn config_errors_name_the_key_and_the_line() {
    let unknown = "configuration:\n  cmd: x\n  quotas:\n    ramLimt: 5\n";
    match parse_config(unknown, "config.yaml") {
        Err(PackError::Config {
            line,
            path,
            message,
            ..
        }) => {
            assert_eq!((line, path.as_str()), (4, "configuration.quotas.ramLimt"));
            assert!(message.starts_with("unknown field `ramLimt`"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let wrong_type = "configuration:\n  cmd: x\n  quotas:\n    ramLimit: lots\n";
    let e = parse_config(wrong_type, "config.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config.yaml:4: configuration.quotas.ramLimit:"),
        "{e}"
    );
    let bad_port = "configuration:\n  cmd: x\n  exposedPorts:\n  - \"80\"\n  - \"http\"\n";
    let e = parse_config(bad_port, "config.yaml")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config.yaml:5: configuration.exposedPorts[1]:"),
        "{e}"
    );
    // What runc would refuse only at start: a quota beyond i64, a noFileLimit of 0, a sysctl
    // of the whole node.
    for (yaml, line, path) in [
        (
            "configuration:\n  cmd: x\n  quotas:\n    ramLimit: 18446744073709551615\n",
            4,
            "configuration.quotas.ramLimit",
        ),
        (
            "configuration:\n  cmd: x\n  quotas:\n    noFileLimit: 0\n",
            4,
            "configuration.quotas.noFileLimit",
        ),
        (
            "configuration:\n  cmd: x\n  sysctl:\n    kernel.panic: \"1\"\n",
            3,
            "configuration.sysctl.kernel.panic",
        ),
    ] {
        let e = parse_config(yaml, "config.yaml").unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("config.yaml:{line}: {path}:")),
            "{e}"
        );
    }
    let missing = "publisher: {author: x}\n";
    let e = parse_config(missing, "config.yaml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("configuration"), "{e}");
}

#[tokio::test]
async fn several_platforms_give_an_index_with_one_manifest_each() {
    use aos_image::source::{self, SourceConfig, SourceSpec};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("multi.tar");
    let platforms = ["linux/amd64".to_string(), "linux/arm64".to_string()];
    aosctl::pack::pack_for(&example("state-writer"), &out, &platforms).unwrap();
    let src = source::open(&SourceSpec::Archive(out.clone()), &SourceConfig::default())
        .await
        .unwrap();
    let amd = aos_image::pipeline::resolve(&*src, "linux", "x86_64", None)
        .await
        .unwrap();
    let arm = aos_image::pipeline::resolve(&*src, "linux", "aarch64", None)
        .await
        .unwrap();
    assert_eq!(amd.config.architecture, "amd64");
    assert_eq!(arm.config.architecture, "arm64");
    assert_ne!(amd.manifest_digest, arm.manifest_digest);
    assert_eq!(
        amd.manifest.layers, arm.manifest.layers,
        "one layer serves both"
    );
    let layout = dir.path().join("layout");
    unpack_archive(&out, &layout);
    assert!(
        !layout.join("manifest.json").exists(),
        "no single manifest with several platforms"
    );
    // Standard tools read each platform's image (named by a tag here).
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    for (i, tag) in ["amd", "arm"].iter().enumerate() {
        index["manifests"][i]["annotations"] =
            serde_json::json!({"org.opencontainers.image.ref.name": tag});
    }
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    for tag in ["amd", "arm"] {
        let inspect = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .output()
            .unwrap();
        assert!(
            inspect.status.success(),
            "{}",
            String::from_utf8_lossy(&inspect.stderr)
        );
        let config: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
        assert_eq!(
            config["architecture"],
            if tag == "amd" { "amd64" } else { "arm64" }
        );
    }
}
