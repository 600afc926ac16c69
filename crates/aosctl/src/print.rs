//! Printing resources as kubectl does: tables with per-kind columns and human ages, YAML, JSON,
//! names, and `describe`.

use aos_api::DynObject;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Padding, Style};

/// kubectl's short human durations: `45s`, `3m12s`, `15m`, `5h3m`, `30h`, `3d4h`, `90d`, `3y20d`.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds();
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let mins = secs / 60;
    if mins < 10 {
        let s = secs % 60;
        return if s == 0 {
            format!("{mins}m")
        } else {
            format!("{mins}m{s}s")
        };
    }
    if mins < 180 {
        return format!("{mins}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = mins % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of a timestamp, as kubectl prints it.
pub fn age(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    t.map_or_else(|| "<unknown>".into(), |t| human_duration(now - t))
}

/// Bytes in binary units: `512`, `1.5Ki`, `23Gi`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}")
    } else if v >= 10.0 {
        format!("{:.0}{}", v, UNITS[i])
    } else {
        format!("{:.1}{}", v, UNITS[i])
    }
}

fn s(v: &Value, ptr: &str) -> String {
    match v.pointer(ptr) {
        None | Some(Value::Null) => "<none>".into(),
        Some(Value::String(x)) if x.is_empty() => "<none>".into(),
        Some(Value::String(x)) => x.clone(),
        Some(x) => x.to_string(),
    }
}

fn n(v: &Value, ptr: &str) -> u64 {
    v.pointer(ptr).and_then(Value::as_u64).unwrap_or(0)
}

fn short_digest(d: &str) -> String {
    d.strip_prefix("sha256:")
        .map_or(d.to_string(), |h| h.chars().take(12).collect())
}

/// Column headers of a kind (`wide` adds more).
pub fn headers(kind: &str, wide: bool) -> Vec<&'static str> {
    let (mut base, extra): (Vec<&str>, Vec<&str>) = match kind {
        "Node" => (
            vec![
                "NAME", "ARCH", "OS", "CPUS", "DMIPS", "RAM", "RUNTIMES", "AGE",
            ],
            vec!["CPU%", "RAM-USED", "NODE-ID"],
        ),
        "Item" => (
            vec![
                "NAME", "ITEM", "VERSION", "TYPE", "PHASE", "PROGRESS", "AGE",
            ],
            vec!["SOURCE", "ERROR"],
        ),
        "Layer" => (
            vec!["NAME", "DIGEST", "PHASE", "SIZE", "AGE"],
            vec!["MEDIA-TYPE", "PATH"],
        ),
        "Instance" => (
            vec![
                "NAME", "ITEM", "VERSION", "SUBJECT", "INDEX", "STATE", "RESTARTS", "IP", "AGE",
            ],
            vec!["RUNTIME", "INSTANCE-ID", "ERROR"],
        ),
        "Network" => (
            vec!["NAME", "SUBNET", "BRIDGE", "GATEWAY", "INSTANCES", "AGE"],
            vec!["VLAN"],
        ),
        "BootSlot" => (
            vec!["NAME", "ITEM", "CURRENT", "PENDING", "HEALTH", "AGE"],
            vec!["MAIN"],
        ),
        "RootfsSlot" => (
            vec!["NAME", "ITEM", "INSTALLED", "PENDING", "ACTION", "AGE"],
            vec![],
        ),
        _ => (vec!["NAME", "AGE"], vec![]),
    };
    if wide {
        base.extend(extra);
    }
    base
}

/// One table row of an object.
pub fn row(o: &DynObject, wide: bool, now: DateTime<Utc>, prefix_kind: bool) -> Vec<String> {
    let v = serde_json::to_value(o).unwrap_or_default();
    let name = if prefix_kind {
        format!("{}/{}", o.kind.to_ascii_lowercase(), o.metadata.name)
    } else {
        o.metadata.name.clone()
    };
    let age = age(o.metadata.creation_timestamp, now);
    let err = || s(&v, "/status/lastError");
    let item_ref = || {
        let id = s(&v, "/spec/item/itemId");
        if id == "<none>" {
            id
        } else {
            format!("{id}:{}", s(&v, "/spec/item/version"))
        }
    };
    let (mut cells, extra): (Vec<String>, Vec<String>) = match o.kind.as_str() {
        "Node" => {
            let runtimes = v
                .pointer("/status/runtimes")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| s(r, "/type"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "<none>".into());
            (
                vec![
                    name,
                    s(&v, "/status/arch"),
                    s(&v, "/status/os"),
                    n(&v, "/status/cpus").to_string(),
                    n(&v, "/status/dmips").to_string(),
                    bytes(n(&v, "/status/totalRam")),
                    runtimes,
                    age,
                ],
                vec![
                    v.pointer("/status/usage/cpuPercent")
                        .and_then(Value::as_f64)
                        .map_or("<none>".into(), |c| format!("{c:.1}")),
                    bytes(n(&v, "/status/usage/ramUsed")),
                    s(&v, "/status/nodeId"),
                ],
            )
        }
        "Item" => {
            let (done, total) = (
                n(&v, "/status/progress/doneBytes"),
                n(&v, "/status/progress/totalBytes"),
            );
            let progress = if total > 0 {
                format!("{}/{}", bytes(done), bytes(total))
            } else {
                "<none>".into()
            };
            let source = ["registry", "http", "archive"]
                .iter()
                .find_map(|k| {
                    v.pointer(&format!("/spec/source/{k}"))
                        .and_then(Value::as_str)
                })
                .unwrap_or("<none>")
                .to_string();
            let phase = v
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("Pending")
                .to_string();
            (
                vec![
                    name,
                    s(&v, "/spec/itemId"),
                    s(&v, "/spec/version"),
                    s(&v, "/spec/type").replace("<none>", "service"),
                    phase,
                    progress,
                    age,
                ],
                vec![source, err()],
            )
        }
        "Layer" => (
            vec![
                name,
                short_digest(&s(&v, "/spec/digest")),
                v.pointer("/status/phase")
                    .and_then(Value::as_str)
                    .unwrap_or("Pending")
                    .to_string(),
                bytes(n(&v, "/spec/size")),
                age,
            ],
            vec![s(&v, "/spec/mediaType"), s(&v, "/status/path")],
        ),
        "Instance" => (
            vec![
                name,
                s(&v, "/spec/itemId"),
                s(&v, "/spec/version"),
                s(&v, "/spec/subjectId"),
                n(&v, "/spec/index").to_string(),
                v.pointer("/status/state")
                    .and_then(Value::as_str)
                    .unwrap_or("activating")
                    .to_string(),
                n(&v, "/status/restarts").to_string(),
                s(&v, "/status/ip"),
                age,
            ],
            vec![s(&v, "/spec/runtime"), s(&v, "/status/instanceId"), err()],
        ),
        "Network" => {
            let count = v
                .pointer("/status/allocations")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            let subnet = match s(&v, "/status/subnet").as_str() {
                "<none>" => s(&v, "/spec/subnet"),
                x => x.to_string(),
            };
            (
                vec![
                    name,
                    subnet,
                    s(&v, "/status/bridge"),
                    s(&v, "/status/gateway"),
                    count.to_string(),
                    age,
                ],
                vec![s(&v, "/spec/vlanId")],
            )
        }
        "BootSlot" => (
            vec![
                name,
                item_ref(),
                s(&v, "/status/current"),
                s(&v, "/status/pending"),
                s(&v, "/status/health"),
                age,
            ],
            vec![s(&v, "/status/main")],
        ),
        "RootfsSlot" => (
            vec![
                name,
                item_ref(),
                s(&v, "/status/installedVersion"),
                s(&v, "/status/pendingVersion"),
                v.pointer("/status/action")
                    .and_then(Value::as_str)
                    .unwrap_or("none")
                    .to_string(),
                age,
            ],
            vec![],
        ),
        _ => (vec![name, age], vec![]),
    };
    if wide {
        cells.extend(extra);
    }
    cells
}

/// Lays out rows in columns separated by three spaces, as kubectl's tabwriter does.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut b = Builder::default();
    b.push_record(headers.iter().map(|h| h.to_string()));
    for r in rows {
        b.push_record(r.clone());
    }
    let mut t = b.build();
    t.with(Style::empty());
    t.modify(Columns::new(..), Padding::new(0, 3, 0, 0));
    let mut out: String = t
        .to_string()
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    if out.is_empty() {
        out.push('\n');
    }
    out
}

/// The object as YAML, without server noise a user did not write (none is dropped: kubectl
/// prints everything too).
pub fn yaml(o: &impl serde::Serialize) -> String {
    serde_norway::to_string(o).unwrap_or_default()
}

/// A `kind: List` of objects, as kubectl prints several objects in YAML or JSON.
pub fn list_value(items: &[DynObject]) -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// `kubectl describe`-style text.
pub fn describe(o: &DynObject, now: DateTime<Utc>) -> String {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_kubectl() {
        let d = chrono::Duration::seconds;
        let cases = [
            (d(-5), "<invalid>"),
            (d(0), "0s"),
            (d(119), "119s"),
            (d(125), "2m5s"),
            (d(600), "10m"),
            (d(3 * 3600 + 60), "3h1m"),
            (d(9 * 3600), "9h"),
            (d(50 * 3600), "2d2h"),
            (d(8 * 86400), "8d"),
            (d(800 * 86400), "2y70d"),
            (d(3000 * 86400), "8y"),
        ];
        for (dur, want) in cases {
            assert_eq!(human_duration(dur), want, "{dur:?}");
        }
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(bytes(512), "512");
        assert_eq!(bytes(1536), "1.5Ki");
        assert_eq!(bytes(24 << 30), "24Gi");
    }

    #[test]
    fn tables_align_columns_with_three_spaces_and_no_trailing_blanks() {
        let t = table(
            &["NAME", "AGE"],
            &[
                vec!["a".into(), "5s".into()],
                vec!["longer".into(), "10m".into()],
            ],
        );
        assert_eq!(t, "NAME     AGE\na        5s\nlonger   10m\n");
    }
}
