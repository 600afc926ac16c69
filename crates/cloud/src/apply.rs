//! Writes a desired status's resources into the store with field ownership, the way
//! server-side apply shares an object between managers: the cloud owns the spec fields it
//! sets (the annotation `aos.edge/cloud-applied` keeps what it last set); a field someone
//! else set and the cloud does not is kept; a field the cloud sets that someone else changed
//! since is a conflict: it is kept as they set it, and reported on the object (annotation
//! `aos.edge/cloud-conflicts` and a Warning event `FieldConflict`), never silently
//! overwritten. Cloud objects no longer desired are deleted, instances first.

use std::collections::BTreeSet;
use std::sync::Arc;

use aos_api::{DynObject, InstanceSpec, ItemSpec, NetworkSpec, Selector, Severity, Spec};
use aos_reconcile::Recorder;
use aos_store::{Backend, StoreError};
use serde_json::{Map, Value};

use crate::desired::{Resources, CLOUD, MANAGED_BY};

/// What the cloud last set on an object: its spec fields, as JSON.
pub const CLOUD_APPLIED: &str = "aos.edge/cloud-applied";
/// The fields the cloud and someone else disagree on.
pub const CLOUD_CONFLICTS: &str = "aos.edge/cloud-conflicts";

/// What one apply did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub deleted: usize,
    /// `kind/name: field …` of every conflict found.
    pub conflicts: Vec<String>,
}

/// The spec `desired` calls for on top of `current`, and the fields in conflict.
pub fn merge(
    current: &Map<String, Value>,
    last: &Map<String, Value>,
    desired: &Map<String, Value>,
) -> (Map<String, Value>, Vec<String>) {
    let mut merged = current.clone();
    let mut conflicts = Vec::new();
    for (k, want) in desired {
        let cur = current.get(k);
        if cur == Some(want) {
            continue;
        }
        if cur.is_none() || cur == last.get(k) {
            merged.insert(k.clone(), want.clone());
        } else {
            conflicts.push(format!(
                "spec.{k}: set to {} here, the cloud wants {}",
                cur.map_or_else(String::new, Value::to_string),
                want
            ));
        }
    }
    // Fields the cloud set before and sets no more go, unless someone changed them since.
    for (k, was) in last {
        if !desired.contains_key(k) && current.get(k) == Some(was) {
            merged.remove(k);
        }
    }
    (merged, conflicts)
}

fn object_map(v: &Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

/// Writes one desired object; returns whether it was created, changed, and its conflicts.
async fn apply_one(
    backend: &Arc<dyn Backend>,
    desired: &DynObject,
    events: &Recorder,
) -> Result<(Option<bool>, Vec<String>), StoreError> {
    let want = object_map(&desired.spec);
    for _ in 0..5 {
        let current = match backend.get(&desired.kind, &desired.metadata.name).await {
            Ok(o) => o,
            Err(e) if e.is_not_found() => {
                let mut o = desired.clone();
                o.metadata.annotations.insert(
                    CLOUD_APPLIED.into(),
                    serde_json::to_string(&desired.spec).unwrap_or_default(),
                );
                match backend.apply(o, false).await {
                    Ok(_) => return Ok((Some(true), Vec::new())),
                    Err(e) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let last: Map<String, Value> = current
            .metadata
            .annotations
            .get(CLOUD_APPLIED)
            .and_then(|t| serde_json::from_str(t).ok())
            .unwrap_or_default();
        let (spec, conflicts) = merge(&object_map(&current.spec), &last, &want);
        let mut next = current.clone();
        next.spec = Value::Object(spec);
        let a = &mut next.metadata.annotations;
        a.insert(
            CLOUD_APPLIED.into(),
            serde_json::to_string(&desired.spec).unwrap_or_default(),
        );
        let said = if conflicts.is_empty() {
            a.remove(CLOUD_CONFLICTS);
            None
        } else {
            let text = conflicts.join("; ");
            a.insert(CLOUD_CONFLICTS.into(), text.clone());
            Some(text)
        };
        for (k, v) in &desired.metadata.labels {
            next.metadata.labels.insert(k.clone(), v.clone());
        }
        for (k, v) in &desired.metadata.annotations {
            next.metadata.annotations.insert(k.clone(), v.clone());
        }
        if next.spec == current.spec
            && next.metadata.labels == current.metadata.labels
            && next.metadata.annotations == current.metadata.annotations
        {
            return Ok((None, conflicts));
        }
        if let Some(text) =
            said.filter(|t| current.metadata.annotations.get(CLOUD_CONFLICTS) != Some(t))
        {
            events.record(
                aos_api::InvolvedObject {
                    kind: current.kind.clone(),
                    name: current.metadata.name.clone(),
                    uid: current.metadata.uid.clone().unwrap_or_default(),
                },
                Severity::Warning,
                "FieldConflict",
                text,
            );
        }
        match backend.apply(next, false).await {
            Ok(_) => return Ok((Some(false), conflicts)),
            Err(e) if e.is_conflict() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(format!(
        "{} {} kept changing while the cloud applied it",
        desired.kind, desired.metadata.name
    )))
}

/// Makes the store hold `r` (and no other cloud objects).
pub async fn apply(
    backend: &Arc<dyn Backend>,
    r: &Resources,
    events: &Recorder,
) -> Result<Applied, StoreError> {
    let mut done = Applied::default();
    let all = r.all();
    for o in &all {
        let (outcome, conflicts) = apply_one(backend, o, events).await?;
        match outcome {
            Some(true) => done.created += 1,
            Some(false) => done.updated += 1,
            None => done.unchanged += 1,
        }
        done.conflicts.extend(
            conflicts
                .into_iter()
                .map(|c| format!("{}/{}: {c}", o.kind.to_ascii_lowercase(), o.metadata.name)),
        );
    }
    let wanted: BTreeSet<(&str, &str)> = all
        .iter()
        .map(|o| (o.kind.as_str(), o.metadata.name.as_str()))
        .collect();
    let selector: Selector = format!("{MANAGED_BY}={CLOUD}")
        .parse()
        .map_err(|e| StoreError::Internal(format!("the cloud selector: {e}")))?;
    for kind in [InstanceSpec::KIND, ItemSpec::KIND, NetworkSpec::KIND] {
        for o in backend.list(kind, &selector).await?.items {
            if wanted.contains(&(kind, o.metadata.name.as_str()))
                || o.metadata.deletion_timestamp.is_some()
            {
                continue;
            }
            match backend.delete(kind, &o.metadata.name, None, false).await {
                Ok(_) => done.deleted += 1,
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn the_cloud_sets_its_fields_keeps_others_and_names_a_clash() {
        let last = map(serde_json::json!({"priority": 10, "index": 0}));
        let current = map(serde_json::json!({"priority": 5, "index": 0, "env": ["MODE=local"]}));
        let want = map(serde_json::json!({"priority": 30, "index": 0}));
        let (merged, conflicts) = merge(&current, &last, &want);
        assert_eq!(merged["priority"], 5, "changed here since: kept");
        assert_eq!(
            merged["env"],
            serde_json::json!(["MODE=local"]),
            "not the cloud's: kept"
        );
        assert_eq!(
            conflicts,
            ["spec.priority: set to 5 here, the cloud wants 30"]
        );
        // Unchanged here since the cloud set it: the cloud's new value.
        let current = map(serde_json::json!({"priority": 10, "index": 0}));
        let (merged, conflicts) = merge(&current, &last, &want);
        assert_eq!(merged["priority"], 30);
        assert!(conflicts.is_empty());
    }

    #[test]
    fn a_field_the_cloud_no_longer_sets_goes_unless_changed_here() {
        let last = map(serde_json::json!({"priority": 10, "network": {"networkId": "a"}}));
        let current = map(serde_json::json!({"priority": 10, "network": {"networkId": "b"}}));
        let (merged, _) = merge(&current, &last, &Map::new());
        assert!(!merged.contains_key("priority"));
        assert_eq!(merged["network"]["networkId"], "b");
    }
}
