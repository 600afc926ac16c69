//! Printing resources as kubectl does: tables with per-kind columns and human ages, YAML, JSON,
//! names, and `describe`.

use aos_api::DynObject;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tabled::builder::Builder;
use tabled::settings::object::Columns;
use tabled::settings::{Padding, Style};

pub use crate::describe::describe;
pub use crate::human::{age, bytes, human_duration};

/// The value at a JSON pointer as a table cell (`<none>` when absent or empty).
pub fn cell(v: &Value, ptr: &str) -> String {
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

/// What the ERROR column shows: the reason of the last failed reconcile, else, for an object
/// that failed (an Item's phase, an Instance's state), the reason of its failing condition.
pub fn error_reason(v: &Value) -> String {
    if let Some(e) = v.pointer("/status/lastError").and_then(Value::as_str) {
        return e.split(':').next().unwrap_or(e).trim().to_string();
    }
    let failed = ["/status/phase", "/status/state"].iter().any(|p| {
        v.pointer(p)
            .and_then(Value::as_str)
            .is_some_and(|x| x.eq_ignore_ascii_case("failed"))
    });
    if !failed {
        return "<none>".into();
    }
    let conditions = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let is_false = |c: &&Value| c["status"] == "False";
    // A specific condition (Running: CrashLoop) says more than the summary (Ready).
    conditions
        .iter()
        .filter(is_false)
        .find(|c| c["type"] != "Ready")
        .or_else(|| conditions.iter().find(is_false))
        .and_then(|c| c["reason"].as_str())
        .filter(|r| !r.is_empty())
        .unwrap_or("Failed")
        .to_string()
}

/// kubectl's words for a node's `Ready` condition: `Ready`, `NotReady`, or `Unknown` (no
/// heartbeat seen, or never reported).
fn node_status(v: &Value) -> String {
    let ready = v
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
    match ready.and_then(|c| c["status"].as_str()) {
        Some("True") => "Ready",
        Some("False") => "NotReady",
        _ => "Unknown",
    }
    .into()
}

/// Column headers of a kind (`wide` adds more).
pub fn headers(kind: &str, wide: bool) -> Vec<&'static str> {
    let (mut base, extra): (Vec<&str>, Vec<&str>) = match kind {
        "Node" => (
            vec![
                "NAME", "STATUS", "ARCH", "OS", "CPUS", "DMIPS", "RAM", "RUNTIMES", "AGE",
            ],
            vec!["ADDRESS", "CPU%", "RAM-USED", "NODE-ID", "HEARTBEAT"],
        ),
        "Item" => (
            vec![
                "NAME", "ITEM", "VERSION", "TYPE", "PHASE", "PROGRESS", "AGE",
            ],
            vec!["NODES", "PLATFORMS", "SOURCE", "ERROR"],
        ),
        "Layer" => (
            vec!["NAME", "DIGEST", "PHASE", "SIZE", "AGE"],
            vec!["MEDIA-TYPE", "PATH"],
        ),
        "Instance" => (
            vec![
                "NAME", "ITEM", "VERSION", "SUBJECT", "INDEX", "STATE", "RESTARTS", "IP", "AGE",
            ],
            vec!["NODE", "RUNTIME", "INSTANCE-ID", "ERROR"],
        ),
        "Network" => (
            vec!["NAME", "SUBNET", "BRIDGE", "GATEWAY", "INSTANCES", "AGE"],
            vec!["VLAN", "SLICES"],
        ),
        "BootSlot" => (
            vec![
                "NAME", "ITEM", "PHASE", "CURRENT", "MAIN", "VERSION", "PENDING", "AGE",
            ],
            vec!["ATTEMPTS", "RECOVERY", "HEALTH", "ERROR"],
        ),
        "RootfsSlot" => (
            vec![
                "NAME",
                "ITEM",
                "PHASE",
                "INSTALLED",
                "PENDING",
                "ACTION",
                "AGE",
            ],
            vec!["ATTEMPTS", "HEALTH", "ERROR"],
        ),
        "Event" => (
            vec!["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"],
            vec!["NAME", "SOURCE", "FIRST SEEN"],
        ),
        _ => (vec!["NAME", "AGE"], vec![]),
    };
    if wide {
        base.extend(extra);
    }
    base
}

/// Puts a listing in the order a reader wants: Events by when they last happened (oldest
/// first, as kubectl shows them), everything else as the store lists it (by name).
pub fn sort_listing(objs: &mut [DynObject]) {
    if objs.first().is_some_and(|o| o.kind == "Event") {
        objs.sort_by_key(|o| {
            o.spec
                .get("lastTimestamp")
                .and_then(Value::as_str)
                .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        });
    }
}

/// `attempts/max` of an OS update while one is pending (the field `pending` names it).
fn attempts(v: &Value, pending: &str) -> String {
    match v.pointer("/status/update") {
        Some(u) if v.pointer(pending).is_some() => {
            format!("{}/{}", u["attempts"], u["maxAttempts"])
        }
        _ => "<none>".into(),
    }
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
    let err = || error_reason(&v);
    let terminating = o.metadata.deletion_timestamp.is_some();
    // kubectl's word for an object whose deletion waits for its finalizers.
    let state = |ptr: &str, default: &str| {
        if terminating {
            return "Terminating".to_string();
        }
        v.pointer(ptr)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let item_ref = || {
        let id = cell(&v, "/spec/item/itemId");
        if id == "<none>" {
            id
        } else {
            format!("{id}:{}", cell(&v, "/spec/item/version"))
        }
    };
    let (mut cells, extra): (Vec<String>, Vec<String>) = match o.kind.as_str() {
        "Node" => {
            let runtimes = v
                .pointer("/status/runtimes")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| cell(r, "/type"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| "<none>".into());
            (
                vec![
                    name,
                    node_status(&v),
                    cell(&v, "/status/arch"),
                    cell(&v, "/status/os"),
                    n(&v, "/status/cpus").to_string(),
                    n(&v, "/status/dmips").to_string(),
                    bytes(n(&v, "/status/totalRam")),
                    runtimes,
                    age,
                ],
                vec![
                    cell(&v, "/status/address"),
                    v.pointer("/status/usage/cpuPercent")
                        .and_then(Value::as_f64)
                        .map_or("<none>".into(), |c| format!("{c:.1}")),
                    bytes(n(&v, "/status/usage/ramUsed")),
                    cell(&v, "/status/nodeId"),
                    cell(&v, "/status/heartbeatTime"),
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
            let phase = state("/status/phase", "Pending");
            // In a unit: of the nodes that run it, how many have it.
            let nodes = match v.pointer("/status/nodes").and_then(Value::as_object) {
                Some(m) if !m.is_empty() => {
                    let ready = m.values().filter(|e| e["phase"] == "Ready").count();
                    format!("{ready}/{}", m.len())
                }
                _ => "<none>".into(),
            };
            // What the index offers, else the platform of the one manifest; `<unknown>` for a
            // status this aosctl cannot read (another version's), as kubectl prints it.
            let platforms = match v.get("status").map(|s| {
                serde_json::from_value::<aos_api::ItemStatus>(s.clone())
                    .map(|s| s.platforms().join(","))
            }) {
                Some(Ok(p)) if !p.is_empty() => p,
                Some(Err(_)) => "<unknown>".into(),
                _ => "<none>".into(),
            };
            (
                vec![
                    name,
                    cell(&v, "/spec/itemId"),
                    cell(&v, "/spec/version"),
                    cell(&v, "/spec/type").replace("<none>", "service"),
                    phase,
                    progress,
                    age,
                ],
                vec![nodes, platforms, source, err()],
            )
        }
        "Layer" => (
            vec![
                name,
                short_digest(&cell(&v, "/spec/digest")),
                state("/status/phase", "Pending"),
                bytes(n(&v, "/spec/size")),
                age,
            ],
            vec![cell(&v, "/spec/mediaType"), cell(&v, "/status/path")],
        ),
        "Instance" => (
            vec![
                name,
                cell(&v, "/spec/itemId"),
                cell(&v, "/spec/version"),
                cell(&v, "/spec/subjectId"),
                n(&v, "/spec/index").to_string(),
                state("/status/state", "activating"),
                n(&v, "/status/restarts").to_string(),
                cell(&v, "/status/ip"),
                age,
            ],
            vec![
                cell(&v, "/spec/nodeName"),
                cell(&v, "/spec/runtime"),
                cell(&v, "/status/instanceId"),
                err(),
            ],
        ),
        "Network" => {
            let count = v
                .pointer("/status/allocations")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len());
            let subnet = match cell(&v, "/status/subnet").as_str() {
                "<none>" => cell(&v, "/spec/subnet"),
                x => x.to_string(),
            };
            // In a unit each node has a slice of the subnet and a gateway of its own.
            let parts: Vec<String> = v
                .pointer("/status/slices")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(node, s)| format!("{node}={}", s.as_str().unwrap_or("?")))
                        .collect()
                })
                .unwrap_or_default();
            let (gateway, slices) = if parts.is_empty() {
                (cell(&v, "/status/gateway"), "<none>".to_string())
            } else {
                ("<per node>".to_string(), parts.join(","))
            };
            (
                vec![
                    name,
                    subnet,
                    cell(&v, "/status/bridge"),
                    gateway,
                    count.to_string(),
                    age,
                ],
                vec![cell(&v, "/spec/vlanId"), slices],
            )
        }
        "BootSlot" => {
            let slot_version = |role: &str| {
                v.pointer("/status/slots")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| x["role"] == role))
                    .and_then(|x| x["version"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            let attempts = attempts(&v, "/status/pending");
            (
                vec![
                    name,
                    item_ref(),
                    cell(&v, "/status/phase"),
                    cell(&v, "/status/current"),
                    cell(&v, "/status/main"),
                    slot_version("main"),
                    cell(&v, "/status/pending"),
                    age,
                ],
                vec![
                    attempts,
                    slot_version("recovery"),
                    cell(&v, "/status/health"),
                    err(),
                ],
            )
        }
        "RootfsSlot" => {
            let attempts = attempts(&v, "/status/pendingVersion");
            (
                vec![
                    name,
                    item_ref(),
                    cell(&v, "/status/phase"),
                    cell(&v, "/status/installedVersion"),
                    cell(&v, "/status/pendingVersion"),
                    v.pointer("/status/action")
                        .and_then(Value::as_str)
                        .unwrap_or("none")
                        .to_string(),
                    age,
                ],
                vec![attempts, cell(&v, "/status/health"), err()],
            )
        }
        "Event" => {
            let seen = |ptr: &str| {
                let t = v.pointer(ptr).and_then(Value::as_str);
                self::age(t.and_then(|t| t.parse().ok()), now)
            };
            (
                vec![
                    seen("/spec/lastTimestamp"),
                    cell(&v, "/spec/type"),
                    cell(&v, "/spec/reason"),
                    format!(
                        "{}/{}",
                        cell(&v, "/spec/involvedObject/kind").to_ascii_lowercase(),
                        cell(&v, "/spec/involvedObject/name")
                    ),
                    n(&v, "/spec/count").to_string(),
                    cell(&v, "/spec/message").replace('\n', " "),
                ],
                vec![name, cell(&v, "/spec/source"), seen("/spec/firstTimestamp")],
            )
        }
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

#[cfg(test)]
mod tests;
