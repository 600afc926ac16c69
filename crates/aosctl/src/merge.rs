//! `apply` semantics as kubectl's client-side apply has them: the file owns the spec and the
//! labels and annotations it names; labels and annotations that others set are kept; those the
//! previous apply set and the file no longer names are removed. What the last apply set is kept
//! in the annotation [`LAST_APPLIED`]. Diffs compare only what a file can set.

use std::collections::BTreeMap;

use aos_api::DynObject;
use serde::{Deserialize, Serialize};

/// The annotation that records what the last `aosctl apply` set.
pub const LAST_APPLIED: &str = "aos.edge/last-applied";

/// What a file set, as recorded in [`LAST_APPLIED`].
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
struct Applied {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn merge_map(
    live: &BTreeMap<String, String>,
    last: &BTreeMap<String, String>,
    file: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = live
        .iter()
        .filter(|(k, _)| !last.contains_key(*k) || file.contains_key(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.extend(file.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// The object to send for `file` given what the node has: the file's spec; labels and
/// annotations merged as the module says; owner references kept unless the file names some;
/// and, when there is a live object, its resourceVersion (so that a concurrent change is a
/// conflict, not a lost update).
pub fn merge(file: &DynObject, live: Option<&DynObject>) -> DynObject {
    let mut out = file.clone();
    let mut own_annotations = file.metadata.annotations.clone();
    own_annotations.remove(LAST_APPLIED);
    let record = Applied {
        labels: file.metadata.labels.clone(),
        annotations: own_annotations.clone(),
    };
    if let Some(live) = live {
        let last: Applied = live
            .metadata
            .annotations
            .get(LAST_APPLIED)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        out.metadata.labels = merge_map(&live.metadata.labels, &last.labels, &file.metadata.labels);
        out.metadata.annotations = merge_map(
            &live.metadata.annotations,
            &last.annotations,
            &own_annotations,
        );
        if file.metadata.owner_references.is_empty() {
            out.metadata.owner_references = live.metadata.owner_references.clone();
        }
        if file.metadata.resource_version == 0 {
            out.metadata.resource_version = live.metadata.resource_version;
        }
    }
    if let Ok(text) = serde_json::to_string(&record) {
        out.metadata.annotations.insert(LAST_APPLIED.into(), text);
    }
    out
}

/// What a diff shows of an object: its name, labels, annotations (but the bookkeeping one) and
/// spec; never status or fields the server sets.
pub fn view(o: &DynObject) -> serde_json::Value {
    let mut annotations = o.metadata.annotations.clone();
    annotations.remove(LAST_APPLIED);
    serde_json::json!({
        "apiVersion": o.api_version,
        "kind": o.kind,
        "metadata": {
            "name": o.metadata.name,
            "labels": o.metadata.labels,
            "annotations": annotations,
        },
        "spec": o.spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(labels: &[(&str, &str)], spec: serde_json::Value) -> DynObject {
        let mut o: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": "Network",
            "metadata": {"name": "n"}, "spec": spec,
        }))
        .unwrap();
        o.metadata.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        o
    }

    #[test]
    fn labels_others_set_are_kept_and_those_the_file_dropped_are_removed() {
        let first = object(&[("app", "web"), ("tier", "1")], serde_json::json!({}));
        let mut live = merge(&first, None);
        live.metadata.resource_version = 7;
        // Someone else labels the object.
        live.metadata.labels.insert("owner".into(), "ops".into());
        let second = object(
            &[("app", "web2")],
            serde_json::json!({"allowOutside": true}),
        );
        let sent = merge(&second, Some(&live));
        let labels: Vec<_> = sent.metadata.labels.iter().collect();
        assert_eq!(
            labels,
            [
                (&"app".to_string(), &"web2".to_string()),
                (&"owner".to_string(), &"ops".to_string())
            ],
            "tier went with the file, owner stays"
        );
        assert_eq!(sent.spec, serde_json::json!({"allowOutside": true}));
        assert_eq!(sent.metadata.resource_version, 7);
    }

    #[test]
    fn the_view_leaves_out_status_server_fields_and_the_bookkeeping() {
        let mut live = merge(&object(&[("a", "b")], serde_json::json!({"x": 1})), None);
        live.metadata.resource_version = 9;
        live.metadata.uid = Some("u".into());
        live.status = serde_json::json!({"phase": "Ready"});
        assert_eq!(
            view(&live),
            view(&object(&[("a", "b")], serde_json::json!({"x": 1})))
        );
    }
}
