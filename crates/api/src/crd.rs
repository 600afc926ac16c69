//! Schemas of the kinds, generated from the Rust types, in the shape of a Kubernetes
//! CustomResourceDefinition; `crds/` at the workspace root holds one per kind.

use schemars::generate::SchemaSettings;

use crate::meta::{Object, Spec};
use crate::registry::KindInfo;

/// The OpenAPI v3 schema (no `$ref`s) of a whole object of kind `S`.
pub fn schema_of<S: Spec>() -> schemars::Schema {
    let mut settings = SchemaSettings::openapi3();
    settings.inline_subschemas = true;
    settings
        .into_generator()
        .into_root_schema_for::<Object<S>>()
}

/// The CRD document of a kind, as YAML.
pub fn crd_yaml(info: &KindInfo) -> String {
    let mut schema = serde_json::to_value((info.schema)()).unwrap_or_default();
    if let Some(m) = schema.as_object_mut() {
        m.retain(|k, _| !k.starts_with('$') && k != "title" && k != "components");
    }
    let doc = serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.aos.edge", info.plural)},
        "spec": {
            "group": "aos.edge",
            "scope": "Cluster",
            "names": {
                "kind": info.kind,
                "plural": info.plural,
                "singular": info.kind.to_ascii_lowercase(),
                "shortNames": info.short,
            },
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": schema},
            }],
        },
    });
    format!(
        "# Generated from crates/api by `AOS_UPDATE_CRDS=1 cargo test -p aos-api --test crds`.\n{}",
        serde_norway::to_string(&doc).unwrap_or_default()
    )
}
