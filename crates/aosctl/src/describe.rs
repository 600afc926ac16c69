//! `kubectl describe`-style text of one object: metadata, spec, status, a table of its
//! conditions and one of its recent events.

use aos_api::DynObject;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::print::{age, cell as s, table, yaml};

/// Most events `describe` shows of one object (the latest).
const EVENTS_SHOWN: usize = 20;

/// `kubectl describe`-style text; `events` may hold any events, those of `o` are shown.
pub fn describe(o: &DynObject, events: &[DynObject], now: DateTime<Utc>) -> String {
    let m = &o.metadata;
    let mut out = String::new();
    let kv = |out: &mut String, k: &str, v: String| {
        out.push_str(&format!("{:<14}{}\n", format!("{k}:"), v))
    };
    let map = |m: &std::collections::BTreeMap<String, String>| {
        if m.is_empty() {
            "<none>".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n              ")
        }
    };
    kv(&mut out, "Name", m.name.clone());
    kv(&mut out, "Kind", o.kind.clone());
    kv(&mut out, "Labels", map(&m.labels));
    kv(&mut out, "Annotations", map(&m.annotations));
    kv(
        &mut out,
        "Created",
        m.creation_timestamp.map_or("<unknown>".into(), |t| {
            format!("{} ({} ago)", t.to_rfc3339(), age(Some(t), now))
        }),
    );
    if let Some(t) = m.deletion_timestamp {
        kv(
            &mut out,
            "Deleting",
            format!("since {} ({} ago)", t.to_rfc3339(), age(Some(t), now)),
        );
    }
    let observed = o
        .status
        .get("observedGeneration")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    kv(
        &mut out,
        "Generation",
        format!("{} (observed {observed})", m.generation),
    );
    if !m.finalizers.is_empty() {
        kv(&mut out, "Finalizers", m.finalizers.join(", "));
    }
    for r in &m.owner_references {
        kv(&mut out, "Owned by", format!("{}/{}", r.kind, r.name));
    }
    let indent = |text: String| text.lines().map(|l| format!("  {l}\n")).collect::<String>();
    out.push_str("Spec:\n");
    out.push_str(&indent(yaml(&o.spec)));
    let mut status = o.status.clone();
    let conditions = status.as_object_mut().and_then(|s| s.remove("conditions"));
    if let Some(s) = status.as_object_mut() {
        s.remove("observedGeneration");
    }
    out.push_str("Status:\n");
    if status.as_object().is_some_and(|s| !s.is_empty()) {
        out.push_str(&indent(yaml(&status)));
    } else {
        out.push_str("  <none>\n");
    }
    out.push_str("Conditions:\n");
    match conditions
        .as_ref()
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
    {
        None => out.push_str("  <none>\n"),
        Some(cs) => {
            let rows: Vec<Vec<String>> = cs
                .iter()
                .map(|c| {
                    let t = c
                        .get("lastTransitionTime")
                        .and_then(Value::as_str)
                        .and_then(|t| t.parse().ok());
                    vec![
                        s(c, "/type"),
                        s(c, "/status"),
                        s(c, "/reason"),
                        age(t, now),
                        s(c, "/message"),
                    ]
                })
                .collect();
            out.push_str(&indent(table(
                &["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"],
                &rows,
            )));
        }
    }
    out.push_str("Events:");
    let theirs = events_of(o, events);
    if theirs.is_empty() {
        out.push_str(" <none>\n");
    } else {
        out.push('\n');
        let time = |e: &Value, k: &str| {
            e.pointer(&format!("/spec/{k}"))
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        };
        let rows: Vec<Vec<String>> = theirs
            .iter()
            .map(|e| {
                let count = e
                    .pointer("/spec/count")
                    .and_then(Value::as_u64)
                    .unwrap_or(1);
                let last = age(time(e, "lastTimestamp"), now);
                let seen = if count > 1 {
                    format!(
                        "{last} (x{count} over {})",
                        age(time(e, "firstTimestamp"), now)
                    )
                } else {
                    last
                };
                vec![
                    s(e, "/spec/type"),
                    s(e, "/spec/reason"),
                    seen,
                    s(e, "/spec/source"),
                    s(e, "/spec/message").replace('\n', " "),
                ]
            })
            .collect();
        out.push_str(&indent(table(
            &["TYPE", "REASON", "AGE", "FROM", "MESSAGE"],
            &rows,
        )));
    }
    out
}

/// The events about `o` (same kind and name, and same uid when the event names one), oldest
/// first, at most the latest [`EVENTS_SHOWN`].
fn events_of(o: &DynObject, events: &[DynObject]) -> Vec<Value> {
    let mut theirs: Vec<Value> = events
        .iter()
        .filter(|e| e.kind == "Event")
        .filter_map(|e| serde_json::to_value(e).ok())
        .filter(|e| {
            let of = |k: &str| {
                e.pointer(&format!("/spec/involvedObject/{k}"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            let uid = of("uid");
            of("kind") == o.kind
                && of("name") == o.metadata.name
                && (uid.is_empty() || o.metadata.uid.as_deref().is_none_or(|u| u == uid))
        })
        .collect();
    theirs.sort_by(|a, b| {
        let t = |e: &Value| {
            e.pointer("/spec/lastTimestamp")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        t(a).cmp(&t(b))
    });
    let skip = theirs.len().saturating_sub(EVENTS_SHOWN);
    theirs.split_off(skip)
}
