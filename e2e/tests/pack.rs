//! Services built with `aosctl pack`, pushed with `aosctl push` to a real registry, are pulled
//! back by aosd (also as a multi-platform index, and straight from the archive).

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
