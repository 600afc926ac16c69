//! The semantics of every write, as pure functions from (operation, current object) to the
//! change to make: shared by every backend so that they cannot disagree.

use aos_api::{DynObject, Revision};
use chrono::{DateTime, Utc};

use crate::{Applied, EventType, Outcome, StoreError};

/// A write.
#[derive(Clone, Debug)]
pub enum Op {
    Apply(DynObject),
    /// Creates, and fails with `AlreadyExists` when the object is there.
    Create(DynObject),
    Status {
        kind: String,
        name: String,
        status: serde_json::Value,
        rv: Option<Revision>,
    },
    Finalizers {
        kind: String,
        name: String,
        finalizers: Vec<String>,
        rv: Option<Revision>,
    },
    Delete {
        kind: String,
        name: String,
        rv: Option<Revision>,
    },
}

impl Op {
    pub fn kind(&self) -> &str {
        match self {
            Op::Apply(o) | Op::Create(o) => &o.kind,
            Op::Status { kind, .. } | Op::Finalizers { kind, .. } | Op::Delete { kind, .. } => kind,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Op::Apply(o) | Op::Create(o) => &o.metadata.name,
            Op::Status { name, .. } | Op::Finalizers { name, .. } | Op::Delete { name, .. } => name,
        }
    }
}

/// What to do to the stored object.
#[derive(Clone, Debug)]
pub enum Change {
    None,
    Put(DynObject, EventType),
    Remove(DynObject),
}

/// What the caller gets back.
#[derive(Clone, Debug)]
pub enum Reply {
    Applied(Applied),
    Object(DynObject),
    Maybe(Option<DynObject>),
}

#[derive(Clone, Debug)]
pub struct Planned {
    pub change: Change,
    pub reply: Reply,
}

/// The storage key of an object.
pub fn key(kind: &str, name: &str) -> String {
    format!("{kind}/{name}")
}

fn check_rv(cur: &DynObject, rv: Option<Revision>) -> Result<(), StoreError> {
    match rv {
        Some(rv) if rv != 0 && rv != cur.metadata.resource_version => Err(StoreError::Conflict {
            kind: cur.kind.clone(),
            name: cur.metadata.name.clone(),
            expected: rv,
            actual: cur.metadata.resource_version,
        }),
        _ => Ok(()),
    }
}

/// An object being deleted is never Ready: its `Ready` condition says `False`, `Terminating`
/// (kubectl's word), from the moment it is marked until it is gone, whatever a controller
/// writes meanwhile.
fn mark_terminating(obj: &mut DynObject, now: DateTime<Utc>) {
    if !obj.status.is_object() {
        obj.status = serde_json::json!({});
    }
    let Some(map) = obj.status.as_object_mut() else {
        return;
    };
    let mut common = aos_api::CommonStatus {
        observed_generation: map
            .get("observedGeneration")
            .and_then(serde_json::Value::as_i64)
            .unwrap_or(0),
        conditions: map
            .get("conditions")
            .cloned()
            .and_then(|c| serde_json::from_value(c).ok())
            .unwrap_or_default(),
        ..Default::default()
    };
    let waiting = if obj.metadata.finalizers.is_empty() {
        String::new()
    } else {
        format!("; waiting for {}", obj.metadata.finalizers.join(", "))
    };
    let message = format!("being deleted{waiting}");
    if common.set_condition(
        aos_api::condition::READY,
        aos_api::ConditionStatus::False,
        aos_api::condition::reason::TERMINATING,
        &message,
        now,
    ) {
        if let Ok(c) = serde_json::to_value(&common.conditions) {
            map.insert("conditions".into(), c);
        }
    }
}

fn removed(mut obj: DynObject, rev: Revision) -> Planned {
    obj.metadata.resource_version = rev;
    Planned {
        change: Change::Remove(obj),
        reply: Reply::Maybe(None),
    }
}

/// Plans one write against the current object. `rev` is the revision the write gets if it
/// changes anything.
pub fn plan(
    op: &Op,
    current: Option<DynObject>,
    rev: Revision,
    now: DateTime<Utc>,
) -> Result<Planned, StoreError> {
    let missing = || StoreError::not_found(op.kind(), op.name());
    match op {
        Op::Create(req) => {
            if current.is_some() {
                return Err(StoreError::AlreadyExists {
                    kind: req.kind.clone(),
                    name: req.metadata.name.clone(),
                });
            }
            let mut req = req.clone();
            req.metadata.resource_version = 0;
            plan(&Op::Apply(req), None, rev, now)
        }
        Op::Apply(req) => {
            if req.metadata.name.is_empty() {
                return Err(StoreError::Invalid(
                    aos_api::FieldError::new("metadata.name", "must not be empty").into(),
                ));
            }
            let Some(cur) = current else {
                if req.metadata.resource_version != 0 {
                    return Err(missing());
                }
                let mut obj = req.clone();
                obj.metadata.uid = Some(uuid::Uuid::new_v4().to_string());
                obj.metadata.generation = 1;
                obj.metadata.resource_version = rev;
                obj.metadata.creation_timestamp = Some(now);
                obj.metadata.deletion_timestamp = None;
                obj.status = serde_json::Value::Null;
                return Ok(Planned {
                    change: Change::Put(obj.clone(), EventType::Added),
                    reply: Reply::Applied(Applied {
                        object: obj,
                        outcome: Outcome::Created,
                    }),
                });
            };
            check_rv(&cur, Some(req.metadata.resource_version))?;
            let mut obj = cur.clone();
            obj.api_version = req.api_version.clone();
            obj.spec = req.spec.clone();
            obj.metadata.labels = req.metadata.labels.clone();
            obj.metadata.annotations = req.metadata.annotations.clone();
            obj.metadata.owner_references = req.metadata.owner_references.clone();
            for f in &req.metadata.finalizers {
                if !obj.metadata.finalizers.contains(f) {
                    obj.metadata.finalizers.push(f.clone());
                }
            }
            if obj == cur {
                return Ok(Planned {
                    change: Change::None,
                    reply: Reply::Applied(Applied {
                        object: cur,
                        outcome: Outcome::Unchanged,
                    }),
                });
            }
            if obj.spec != cur.spec {
                obj.metadata.generation += 1;
            }
            obj.metadata.resource_version = rev;
            Ok(Planned {
                change: Change::Put(obj.clone(), EventType::Modified),
                reply: Reply::Applied(Applied {
                    object: obj,
                    outcome: Outcome::Configured,
                }),
            })
        }
        Op::Status { status, rv, .. } => {
            let cur = current.ok_or_else(missing)?;
            check_rv(&cur, *rv)?;
            let mut obj = cur.clone();
            obj.status = status.clone();
            if obj.metadata.deletion_timestamp.is_some() {
                mark_terminating(&mut obj, now);
            }
            if cur.status == obj.status {
                return Ok(Planned {
                    change: Change::None,
                    reply: Reply::Object(cur),
                });
            }
            obj.metadata.resource_version = rev;
            Ok(Planned {
                change: Change::Put(obj.clone(), EventType::Modified),
                reply: Reply::Object(obj),
            })
        }
        Op::Finalizers { finalizers, rv, .. } => {
            let cur = current.ok_or_else(missing)?;
            check_rv(&cur, *rv)?;
            if cur.metadata.deletion_timestamp.is_some() && finalizers.is_empty() {
                return Ok(removed(cur, rev));
            }
            if cur.metadata.finalizers == *finalizers {
                return Ok(Planned {
                    change: Change::None,
                    reply: Reply::Maybe(Some(cur)),
                });
            }
            let mut obj = cur;
            obj.metadata.finalizers = finalizers.clone();
            obj.metadata.resource_version = rev;
            Ok(Planned {
                change: Change::Put(obj.clone(), EventType::Modified),
                reply: Reply::Maybe(Some(obj)),
            })
        }
        Op::Delete { rv, .. } => {
            let cur = current.ok_or_else(missing)?;
            check_rv(&cur, *rv)?;
            if cur.metadata.finalizers.is_empty() {
                return Ok(removed(cur, rev));
            }
            if cur.metadata.deletion_timestamp.is_some() {
                return Ok(Planned {
                    change: Change::None,
                    reply: Reply::Maybe(Some(cur)),
                });
            }
            let mut obj = cur;
            obj.metadata.deletion_timestamp = Some(now);
            obj.metadata.resource_version = rev;
            mark_terminating(&mut obj, now);
            Ok(Planned {
                change: Change::Put(obj.clone(), EventType::Modified),
                reply: Reply::Maybe(Some(obj)),
            })
        }
    }
}
