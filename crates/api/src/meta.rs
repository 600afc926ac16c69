//! Object metadata, conditions, the status bookkeeping shared by every kind, and the two object
//! shapes: typed [`Object<S>`] for controllers and untyped [`DynObject`] for the store and the API.

use std::collections::BTreeMap;
use std::fmt::Debug;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::validate::{FieldError, ValidationErrors};

/// A store revision; an object's `resourceVersion` is the revision of its last write.
pub type Revision = u64;

/// Metadata every object carries. Fields the server owns (uid, generation, resourceVersion,
/// timestamps) are ignored when a client sends them, except `resourceVersion`, which makes a
/// write conditional (compare-and-swap).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: i64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub resource_version: Revision,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// Points at an object that owns this one; an object whose owners are all gone is collected.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<bool>,
}

/// `True`, `False` or `Unknown`, as in Kubernetes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ConditionStatus {
    True,
    False,
    #[default]
    Unknown,
}

/// One observation about an object (`Ready`, `Reconciled`, …).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: ConditionStatus,
    /// CamelCase reason.
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Status fields every kind has: the generation last acted on, conditions, and the controller
/// runtime's backoff bookkeeping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommonStatus {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub observed_generation: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub consecutive_failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

impl CommonStatus {
    /// The condition of that type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Sets a condition; `lastTransitionTime` moves only when the status value changes.
    /// Returns whether anything changed.
    pub fn set_condition(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: DateTime<Utc>,
    ) -> bool {
        let observed = Some(self.observed_generation).filter(|g| *g != 0);
        if let Some(c) = self.conditions.iter_mut().find(|c| c.type_ == type_) {
            let changed = c.status != status || c.reason != reason || c.message != message;
            if c.status != status {
                c.last_transition_time = now;
            }
            c.status = status;
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = observed;
            return changed;
        }
        self.conditions.push(Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: message.to_string(),
            last_transition_time: now,
            observed_generation: observed,
        });
        true
    }

    /// Whether the condition of that type is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.status == ConditionStatus::True)
    }
}

/// The status of a kind: any serde type that embeds a [`CommonStatus`].
pub trait Status:
    Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + Default
    + PartialEq
    + JsonSchema
    + Send
    + Sync
    + 'static
{
    fn common(&self) -> &CommonStatus;
    fn common_mut(&mut self) -> &mut CommonStatus;
}

/// Implements [`Status`] for a struct with a `common: CommonStatus` field.
#[macro_export]
macro_rules! impl_status {
    ($t:ty) => {
        impl $crate::meta::Status for $t {
            fn common(&self) -> &$crate::meta::CommonStatus {
                &self.common
            }
            fn common_mut(&mut self) -> &mut $crate::meta::CommonStatus {
                &mut self.common
            }
        }
    };
}

/// The spec of a kind, which names the kind and its status type.
pub trait Spec:
    Serialize + DeserializeOwned + Clone + Debug + PartialEq + JsonSchema + Send + Sync + 'static
{
    /// `Node`, `Item`, …
    const KIND: &'static str;
    type Status: Status;

    /// Checks what serde cannot: formats, ranges, exclusive fields. Paths start at `spec`.
    fn validate(&self, _errors: &mut Vec<FieldError>) {}

    /// Checks what a kind needs of its objects' names beyond a DNS subdomain.
    fn validate_name(_name: &str, _errors: &mut Vec<FieldError>) {}

    /// Checks a change of an existing object's spec (fields that cannot change once acted on).
    fn validate_update(
        &self,
        _old: &Self,
        _old_status: &Self::Status,
        _errors: &mut Vec<FieldError>,
    ) {
    }
}

/// A typed object of one kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound = "")]
#[schemars(bound = "S: JsonSchema")]
pub struct Object<S: Spec> {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: S,
    #[serde(default)]
    pub status: S::Status,
}

impl<S: Spec> Object<S> {
    /// A new object with that name and spec, and an empty status.
    pub fn new(name: impl Into<String>, spec: S) -> Self {
        Object {
            api_version: crate::API_VERSION.to_string(),
            kind: S::KIND.to_string(),
            metadata: ObjectMeta {
                name: name.into(),
                ..ObjectMeta::default()
            },
            spec,
            status: S::Status::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The untyped form, for the store and the wire.
    pub fn to_dyn(&self) -> DynObject {
        DynObject {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            metadata: self.metadata.clone(),
            spec: serde_json::to_value(&self.spec).unwrap_or_default(),
            status: status_value(&self.status),
        }
    }

    /// The typed form of an untyped object of this kind.
    pub fn from_dyn(obj: &DynObject) -> Result<Self, ValidationErrors> {
        if obj.kind != S::KIND {
            return Err(
                FieldError::new("kind", format!("expected {}, got {}", S::KIND, obj.kind)).into(),
            );
        }
        let spec: S = from_value_at(&obj.spec, "spec")?;
        let status: S::Status = if obj.status.is_null() {
            S::Status::default()
        } else {
            from_value_at(&obj.status, "status")?
        };
        Ok(Object {
            api_version: obj.api_version.clone(),
            kind: obj.kind.clone(),
            metadata: obj.metadata.clone(),
            spec,
            status,
        })
    }
}

/// The JSON of a status, `null` when it is the default one.
pub fn status_value<T: Status>(status: &T) -> serde_json::Value {
    if *status == T::default() {
        serde_json::Value::Null
    } else {
        serde_json::to_value(status).unwrap_or_default()
    }
}

/// Deserializes a JSON value, naming the failing field below `prefix`.
pub fn from_value_at<T: DeserializeOwned>(
    value: &serde_json::Value,
    prefix: &str,
) -> Result<T, ValidationErrors> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let inner = e.path().to_string();
        let path = if inner == "." || inner.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{inner}")
        };
        FieldError::new(path, e.inner().to_string()).into()
    })
}

/// An object of any kind, with spec and status kept as JSON: what the store keeps and the API
/// carries.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DynObject {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub status: serde_json::Value,
}

impl DynObject {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// `kind/name`, as printed by aosctl.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.metadata.name)
    }

    /// The condition of that type from the status, if any.
    pub fn condition(&self, type_: &str) -> Option<Condition> {
        let conds = self.status.get("conditions")?.as_array()?;
        conds
            .iter()
            .filter_map(|c| serde_json::from_value::<Condition>(c.clone()).ok())
            .find(|c| c.type_ == type_)
    }
}
