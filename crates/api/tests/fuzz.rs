//! Property tests of the parsers that read what users and clouds send (manifests, item
//! configs): any input gives a value or an error that names where, never a panic. The number
//! of cases is PROPTEST_CASES (256 in hack/test.sh; hack/fuzz.sh runs many more).
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use aos_api::manifest::parse;
use aos_api::ItemConfig;
use proptest::prelude::*;

/// YAML-ish text: keys and values of the manifest grammar shuffled with noise.
fn manifest_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("apiVersion: aos.edge/v1alpha1\n".to_string()),
        Just("kind: Instance\n".to_string()),
        Just("kind: Item\n".to_string()),
        Just("kind: Network\n".to_string()),
        Just("metadata:\n  name: a\n".to_string()),
        Just("spec:\n".to_string()),
        Just("  itemId: x\n".to_string()),
        Just("  subnet: 10.0.0.0/24\n".to_string()),
        Just("  env:\n  - name: A\n    value: b\n".to_string()),
        Just("---\n".to_string()),
        Just("  index: 18446744073709551616\n".to_string()),
        Just("{\"a\": [".to_string()),
        "[ -~\n\t]{0,40}",
        any::<String>(),
    ];
    proptest::collection::vec(token, 0..24).prop_map(|v| v.concat())
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        "[a-zA-Z0-9._/:-]{0,20}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        let keys = prop_oneof![
            Just("quotas".to_string()),
            Just("ramLimit".to_string()),
            Just("noFileLimit".to_string()),
            Just("sysctl".to_string()),
            Just("resources".to_string()),
            Just("mode".to_string()),
            Just("hostname".to_string()),
            Just("runParameters".to_string()),
            Just("startInterval".to_string()),
            "[a-zA-Z.]{1,12}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(keys, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn any_manifest_text_parses_or_names_a_line(text in manifest_text()) {
        match parse(&text, Some("f.yaml")) {
            Ok(docs) => for d in docs {
                prop_assert!(d.line >= 1);
            },
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn any_item_config_document_reads_and_checks_without_panicking(v in json()) {
        if let Ok(c) = ItemConfig::parse(&v) {
            for e in c.validate() {
                prop_assert!(!e.path.is_empty());
            }
        }
    }
}
