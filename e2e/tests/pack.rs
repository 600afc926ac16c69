//! Services built with `aosctl pack`, pushed with `aosctl push` to a real registry, are pulled
//! back by aosd (also as a multi-platform index, and straight from the archive).
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use aos_e2e::{Aosd, AosdOptions};
use aos_testkit::Registry;

fn item_yaml(name: &str, item_id: &str, version: &str, source: &str) -> String {
    format!(
        "apiVersion: aos.edge/v1alpha1\nkind: Item\nmetadata:\n  name: {name}\nspec:\n  itemId: {item_id}\n  version: \"{version}\"\n  source:\n    {source}\n"
    )
}

fn apply(aosd: &Aosd, name: &str, yaml: &str) {
    let path = aosd.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    aosd.ok(&["apply", "-f", path.to_str().unwrap()]);
}

#[test]
fn a_packed_and_pushed_service_is_pulled_back_by_aosd() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let archive = dir.path().join("svc.tar");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services/state-writer");
    let aosd = Aosd::start_with(AosdOptions {
        config: Some(format!(
            "[images]\ninsecure_registries = [\"{}\"]\n",
            registry.host()
        )),
        ..Default::default()
    });
    let packed = aosd.ok(&[
        "pack",
        examples.to_str().unwrap(),
        "-o",
        archive.to_str().unwrap(),
    ]);
    let reference = format!("{}/aos/state-writer:1.0.0", registry.host());
    let pushed = aosd.ok(&[
        "push",
        archive.to_str().unwrap(),
        &reference,
        "--insecure",
        &registry.host(),
    ]);
    let digest = pushed.trim().rsplit(' ').next().unwrap().to_string();
    assert!(packed.contains(&digest), "{packed} / {pushed}");
    apply(
        &aosd,
        "sw",
        &item_yaml(
            "sw",
            "state-writer",
            "1.0.0",
            &format!("registry: {reference}"),
        ),
    );
    let item = aosd.until("item", "sw", 30, |v| v["status"]["phase"] == "Ready");
    assert_eq!(item["status"]["manifestDigest"], digest.as_str());
    assert_eq!(item["status"]["config"]["item"]["quotas"]["pidsLimit"], 16);
    // The archive itself is an Item source too.
    apply(
        &aosd,
        "sw-local",
        &item_yaml(
            "sw-local",
            "state-writer",
            "1.0.0",
            &format!("archive: {}", archive.display()),
        ),
    );
    aosd.ok(&[
        "wait",
        "item/sw-local",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    // A multi-platform archive goes up as an index; aosd picks its own platform from it.
    let multi = dir.path().join("multi.tar");
    aosd.ok(&[
        "pack",
        examples.to_str().unwrap(),
        "-o",
        multi.to_str().unwrap(),
        "--platform",
        "linux/arm64,linux/amd64",
    ]);
    let multi_ref = format!("{}/aos/state-writer:multi", registry.host());
    aosd.ok(&[
        "push",
        multi.to_str().unwrap(),
        &multi_ref,
        "--insecure",
        &registry.host(),
    ]);
    apply(
        &aosd,
        "sw-multi",
        &item_yaml(
            "sw-multi",
            "state-writer",
            "1.0.0",
            &format!("registry: {multi_ref}"),
        ),
    );
    let m = aosd.until("item", "sw-multi", 30, |v| v["status"]["phase"] == "Ready");
    assert_eq!(m["status"]["config"]["image"]["architecture"], "amd64");
    aosd.ok(&["delete", "item", "sw", "sw-local", "sw-multi", "--wait"]);
}

#[test]
fn inspect_lists_platforms_takes_one_and_says_why_a_registry_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start();
    let aosd = Aosd::start();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services/state-writer");
    let archive = dir.path().join("multi.tar");
    let archive = archive.to_str().unwrap();
    aosd.ok(&[
        "pack",
        examples.to_str().unwrap(),
        "-o",
        archive,
        "--platform",
        "linux/amd64,linux/arm64",
    ]);
    let arm: serde_json::Value =
        serde_norway::from_str(&aosd.ok(&["inspect", archive, "--platform", "linux/arm64"]))
            .unwrap();
    assert_eq!(arm["platform"], "linux/arm64");
    assert_eq!(arm["config"]["architecture"], "arm64");
    assert_eq!(
        arm["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    let out = aosd.run(&["inspect", archive, "--platform", "linux/riscv64"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("it offers linux/amd64, linux/arm64"),
        "{err}"
    );

    // A plain-HTTP registry without --insecure, and nothing listening at all.
    aosd.ok(&[
        "push",
        archive,
        &format!("{}/aos/sw:1", registry.host()),
        "--insecure",
        &registry.host(),
    ]);
    let out = aosd.run(&["inspect", &format!("{}/aos/sw:1", registry.host())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("add --insecure {}", registry.host())),
        "{err}"
    );
    let closed = format!("127.0.0.1:{}", aos_e2e::node::free_port());
    let out = aosd.run(&[
        "push",
        archive,
        &format!("{closed}/aos/sw:1"),
        "--insecure",
        &closed,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
}
