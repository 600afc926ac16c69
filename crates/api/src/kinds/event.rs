//! Event: one thing that happened to an object (pulled, started, exited, OOMKilled, rolled
//! back…), written by the controllers, counted when it happens again, and pruned by number and
//! age. Like Kubernetes' Event, with the fields in `spec`.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::check_not_empty;
use crate::{impl_status, CommonStatus, FieldError, Spec};

/// Most bytes of an event's message; longer ones are cut by the recorder.
pub const MAX_EVENT_MESSAGE: usize = 1024;

/// The object an event is about.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvolvedObject {
    pub kind: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

/// Whether an event is routine or needs an operator's eye.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum Severity {
    #[default]
    Normal,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Normal => "Normal",
            Severity::Warning => "Warning",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventSpec {
    pub involved_object: InvolvedObject,
    #[serde(rename = "type", default)]
    pub severity: Severity,
    /// CamelCase: `Pulled`, `Started`, `OOMKilled`, `RolledBack`…
    pub reason: String,
    #[serde(default)]
    pub message: String,
    /// How many times it happened between the first and the last time.
    #[serde(default = "one")]
    pub count: u32,
    pub first_timestamp: DateTime<Utc>,
    pub last_timestamp: DateTime<Utc>,
    /// The component that saw it (`instance-controller`, `alerts`…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

fn one() -> u32 {
    1
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventStatus {
    #[serde(flatten)]
    pub common: CommonStatus,
}
impl_status!(EventStatus);

impl Spec for EventSpec {
    const KIND: &'static str = "Event";
    type Status = EventStatus;

    fn validate(&self, errors: &mut Vec<FieldError>) {
        check_not_empty(
            "spec.involvedObject.kind",
            &self.involved_object.kind,
            errors,
        );
        check_not_empty(
            "spec.involvedObject.name",
            &self.involved_object.name,
            errors,
        );
        check_not_empty("spec.reason", &self.reason, errors);
        if !self.reason.chars().all(|c| c.is_ascii_alphanumeric()) || self.reason.len() > 128 {
            errors.push(FieldError::new(
                "spec.reason",
                format!(
                    "{:?} is not a CamelCase word of at most 128 letters and digits",
                    self.reason
                ),
            ));
        }
        if self.message.len() > MAX_EVENT_MESSAGE {
            errors.push(FieldError::new(
                "spec.message",
                format!("{} bytes; at most {MAX_EVENT_MESSAGE}", self.message.len()),
            ));
        }
        if self.count == 0 {
            errors.push(FieldError::new("spec.count", "must be at least 1"));
        }
        if self.last_timestamp < self.first_timestamp {
            errors.push(FieldError::new(
                "spec.lastTimestamp",
                "is before spec.firstTimestamp",
            ));
        }
    }
}
