//! The table of kinds: names (singular, plural, short), validation and schema of each, so
//! that the API server, the store and aosctl treat every kind alike.

use crate::meta::{DynObject, Object, Spec};
use crate::validate::{check_label, check_name, FieldError, ValidationErrors};
use crate::{
    BootSlotSpec, EventSpec, InstanceSpec, ItemSpec, LayerSpec, NetworkSpec, NodeSpec,
    RootfsSlotSpec, API_VERSION,
};

/// What the rest of the system needs to know about one kind.
#[derive(Clone, Copy)]
pub struct KindInfo {
    pub kind: &'static str,
    pub plural: &'static str,
    pub short: &'static [&'static str],
    /// Checks an untyped object of this kind; errors name the field.
    pub validate: fn(&DynObject) -> Result<(), ValidationErrors>,
    /// Checks a change of an existing object (`new`, `old`): what may not change.
    pub validate_update: fn(&DynObject, &DynObject) -> Result<(), ValidationErrors>,
    /// The JSON schema of the whole object.
    pub schema: fn() -> schemars::Schema,
    /// Whether it is desired state that `get all` shows and `apply --prune` may remove
    /// (Events are records of what happened, and are neither).
    pub desired: bool,
}

impl std::fmt::Debug for KindInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind)
    }
}

fn info<S: Spec>(plural: &'static str, short: &'static [&'static str]) -> KindInfo {
    KindInfo {
        kind: S::KIND,
        plural,
        short,
        validate: validate_typed::<S>,
        validate_update: validate_update::<S>,
        schema: crate::crd::schema_of::<S>,
        desired: true,
    }
}

/// Every kind aosd knows, in the order aosctl lists them.
pub static KINDS: std::sync::LazyLock<Vec<KindInfo>> = std::sync::LazyLock::new(|| {
    vec![
        info::<NodeSpec>("nodes", &["no"]),
        info::<ItemSpec>("items", &["it"]),
        info::<LayerSpec>("layers", &["ly"]),
        info::<InstanceSpec>("instances", &["inst"]),
        info::<NetworkSpec>("networks", &["net"]),
        info::<BootSlotSpec>("bootslots", &["bs"]),
        info::<RootfsSlotSpec>("rootfsslots", &["rs"]),
        KindInfo {
            desired: false,
            ..info::<EventSpec>("events", &["ev"])
        },
    ]
});

/// Finds a kind by its name, plural or short form, in any case.
pub fn lookup(name: &str) -> Option<&'static KindInfo> {
    let n = name.to_ascii_lowercase();
    KINDS.iter().find(|k| {
        k.kind.to_ascii_lowercase() == n || k.plural == n || k.short.contains(&n.as_str())
    })
}

/// Checks the parts every object shares: apiVersion, kind, name, labels.
pub fn validate_meta(obj: &DynObject, errors: &mut Vec<FieldError>) {
    if obj.api_version != API_VERSION {
        errors.push(FieldError::new(
            "apiVersion",
            format!("{:?} is not served; use {API_VERSION}", obj.api_version),
        ));
    }
    check_name("metadata.name", &obj.metadata.name, errors);
    for (k, v) in &obj.metadata.labels {
        check_label("metadata.labels", k, v, errors);
    }
    let annotations: usize = obj
        .metadata
        .annotations
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if annotations > MAX_ANNOTATIONS {
        errors.push(FieldError::new(
            "metadata.annotations",
            format!("{annotations} bytes; at most {MAX_ANNOTATIONS} (as Kubernetes)"),
        ));
    }
}

/// Most bytes of all annotations of an object together (keys and values).
pub const MAX_ANNOTATIONS: usize = 256 << 10;

/// Validates an untyped object as kind `S`: shared metadata, the spec's shape (unknown fields
/// refused) and the spec's own rules.
pub fn validate_typed<S: Spec>(obj: &DynObject) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    validate_meta(obj, &mut errors);
    S::validate_name(&obj.metadata.name, &mut errors);
    match Object::<S>::from_dyn(obj) {
        Ok(typed) => typed.spec.validate(&mut errors),
        Err(e) => errors.extend(e.0),
    }
    ValidationErrors::check(errors)
}

/// Checks the change from `old` to `new` as kind `S` (both already valid on their own).
pub fn validate_update<S: Spec>(new: &DynObject, old: &DynObject) -> Result<(), ValidationErrors> {
    let mut errors = Vec::new();
    if let (Ok(n), Ok(o)) = (Object::<S>::from_dyn(new), Object::<S>::from_dyn(old)) {
        n.spec.validate_update(&o.spec, &o.status, &mut errors);
    }
    ValidationErrors::check(errors)
}

/// Validates an untyped object of any known kind.
pub fn validate(obj: &DynObject) -> Result<(), ValidationErrors> {
    let info = KINDS.iter().find(|k| k.kind == obj.kind).ok_or_else(|| {
        ValidationErrors::from(FieldError::new(
            "kind",
            format!(
                "unknown kind {:?}; known kinds: {}",
                obj.kind,
                KINDS.iter().map(|k| k.kind).collect::<Vec<_>>().join(", ")
            ),
        ))
    })?;
    (info.validate)(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_name_plural_and_short_form() {
        for n in ["Instance", "instance", "instances", "inst", "INSTANCES"] {
            assert_eq!(lookup(n).unwrap().kind, "Instance", "{n}");
        }
        assert_eq!(lookup("no").unwrap().kind, "Node");
        assert_eq!(lookup("rootfsslots").unwrap().kind, "RootfsSlot");
        assert!(lookup("pods").is_none());
    }

    #[test]
    fn an_unknown_spec_field_is_named_in_the_error() {
        let obj: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Item", "metadata": {"name": "a"},
            "spec": {"itemId": "x", "version": "1", "source": {"registry": "r/x:1"}, "versoin": 2}
        }))
        .unwrap();
        let err = validate(&obj).unwrap_err();
        assert!(err.to_string().contains("versoin"), "{err}");
    }

    #[test]
    fn a_wrong_type_deep_in_the_spec_names_the_path() {
        let obj: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Instance", "metadata": {"name": "a"},
            "spec": {"itemId": "x", "version": "1", "subjectId": "s", "runtime": "container",
                     "restartPolicy": {"startBurst": "many"}}
        }))
        .unwrap();
        let err = validate(&obj).unwrap_err();
        assert_eq!(err.0[0].path, "spec.restartPolicy.startBurst", "{err}");
    }

    #[test]
    fn annotations_are_limited_to_256_kib_together() {
        let mut obj: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Network", "metadata": {"name": "n"}, "spec": {}
        }))
        .unwrap();
        obj.metadata
            .annotations
            .insert("big".into(), "x".repeat(MAX_ANNOTATIONS));
        let e = validate(&obj).unwrap_err();
        assert_eq!(e.0[0].path, "metadata.annotations", "{e}");
        obj.metadata
            .annotations
            .insert("big".into(), "x".repeat(1000));
        assert!(validate(&obj).is_ok());
    }

    #[test]
    fn instance_names_are_container_ids_and_host_names() {
        let inst = |name: &str| -> DynObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": API_VERSION, "kind": "Instance", "metadata": {"name": name},
                "spec": {"itemId": "x", "version": "1", "subjectId": "s", "runtime": "container"}
            }))
            .unwrap()
        };
        assert!(validate(&inst("web-0")).is_ok());
        let e = validate(&inst("x..y")).unwrap_err();
        assert!(e.to_string().contains("two separators in a row"), "{e}");
        let e = validate(&inst(&"a".repeat(77))).unwrap_err();
        assert!(e.to_string().contains("at most 63"), "{e}");
        // Other kinds keep the subdomain rule.
        let mut net = inst("x..y");
        net.kind = "Network".into();
        net.spec = serde_json::json!({});
        assert!(validate(&net).is_ok());
    }

    #[test]
    fn every_error_of_an_object_is_reported_at_once() {
        let obj: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Item", "metadata": {"name": "Bad_Name"},
            "spec": {"itemId": "", "version": "1", "source": {}}
        }))
        .unwrap();
        let err = validate(&obj).unwrap_err();
        let paths: Vec<_> = err.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["apiVersion", "metadata.name", "spec.itemId", "spec.source"]
        );
    }

    #[test]
    fn unknown_kinds_are_refused_with_the_list_of_known_ones() {
        let obj: DynObject = serde_json::from_value(serde_json::json!({
            "apiVersion": API_VERSION, "kind": "Pod", "metadata": {"name": "a"}, "spec": {}
        }))
        .unwrap();
        let err = validate(&obj).unwrap_err().to_string();
        assert!(
            err.contains("unknown kind") && err.contains("Instance"),
            "{err}"
        );
    }
}
