//! The checked-in schemas in `crds/` must equal what the Rust types generate.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use aos_api::crd::crd_yaml;
use aos_api::KINDS;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn checked_in_crds_match_the_rust_types() {
    let update = std::env::var_os("AOS_UPDATE_CRDS").is_some();
    let mut stale = Vec::new();
    for info in KINDS.iter() {
        let path = crds_dir().join(format!("{}.yaml", info.kind.to_ascii_lowercase()));
        let want = crd_yaml(info);
        if update {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "these schemas drifted from the Rust types: {stale:?}; regenerate with \
         AOS_UPDATE_CRDS=1 cargo test -p aos-api --test crds"
    );
}

#[test]
fn every_crd_describes_spec_and_status() {
    for info in KINDS.iter() {
        let yaml = crd_yaml(info);
        let doc: serde_json::Value =
            serde_norway::from_str(yaml.split_once('\n').unwrap().1).unwrap();
        let props = &doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        for field in ["apiVersion", "kind", "metadata", "spec", "status"] {
            assert!(
                props.get(field).is_some(),
                "{}: no {field} in schema",
                info.kind
            );
        }
        assert!(
            !yaml.contains("$ref"),
            "{}: schema still has $ref",
            info.kind
        );
    }
}
