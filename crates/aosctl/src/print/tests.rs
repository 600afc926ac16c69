//! Unit tests of the table printer: durations, the ERROR column, units, alignment, events.

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
fn the_error_column_names_the_failing_condition() {
    let item = serde_json::json!({"status": {"phase": "Failed", "conditions": [
        {"type": "Ready", "status": "False", "reason": "DigestMismatch", "message": "x"}]}});
    assert_eq!(error_reason(&item), "DigestMismatch");
    let looping = serde_json::json!({"status": {"state": "failed", "conditions": [
        {"type": "Ready", "status": "False", "reason": "Error"},
        {"type": "Running", "status": "False", "reason": "CrashLoop"}]}});
    assert_eq!(error_reason(&looping), "CrashLoop");
    let retrying = serde_json::json!({"status": {"lastError": "StoreError: disk full"}});
    assert_eq!(error_reason(&retrying), "StoreError");
    let fine = serde_json::json!({"status": {"state": "active"}});
    assert_eq!(error_reason(&fine), "<none>");
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

fn event(
    now: DateTime<Utc>,
    name: &str,
    object: &str,
    reason: &str,
    count: u32,
    last_s: i64,
) -> DynObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "aos.edge/v1alpha1",
        "kind": "Event",
        "metadata": {"name": name},
        "spec": {
            "involvedObject": {"kind": "Instance", "name": object, "uid": "u1"},
            "type": "Warning",
            "reason": reason,
            "message": "exited with\ncode 1",
            "count": count,
            "firstTimestamp": (now - chrono::Duration::seconds(600)).to_rfc3339(),
            "lastTimestamp": (now - chrono::Duration::seconds(last_s)).to_rfc3339(),
            "source": "instance-controller"
        }
    }))
    .unwrap()
}

#[test]
fn events_list_oldest_first_with_object_count_and_a_one_line_message() {
    let now = Utc::now();
    let mut objs = vec![
        event(now, "b", "web", "Error", 3, 5),
        event(now, "a", "db", "OOMKilled", 1, 90),
    ];
    sort_listing(&mut objs);
    let rows: Vec<_> = objs.iter().map(|o| row(o, false, now, false)).collect();
    assert_eq!(
        headers("Event", false),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "COUNT", "MESSAGE"]
    );
    assert_eq!(
        rows[0][1..],
        [
            "Warning",
            "OOMKilled",
            "instance/db",
            "1",
            "exited with code 1"
        ]
    );
    assert_eq!(rows[1][2..5], ["Error", "instance/web", "3"]);
    assert_eq!(rows[1][0], "5s");
    let wide = row(&objs[1], true, now, false);
    assert_eq!(wide[6..8], ["b", "instance-controller"]);
}

#[test]
fn describe_shows_the_latest_events_of_that_object_only() {
    let now = Utc::now();
    let web: DynObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "aos.edge/v1alpha1",
        "kind": "Instance",
        "metadata": {"name": "web", "uid": "u1"},
        "spec": {}
    }))
    .unwrap();
    let events = [
        event(now, "b", "web", "Error", 3, 5),
        event(now, "a", "db", "OOMKilled", 1, 90),
    ];
    let text = describe(&web, &events, now);
    let tail = text.split_once("Events:\n").unwrap().1;
    assert!(tail.contains("TYPE"), "{text}");
    assert!(tail.contains("Error"), "{text}");
    assert!(tail.contains("5s (x3 over 10m)"), "{text}");
    assert!(!tail.contains("OOMKilled"), "{text}");
    // Another object of that name (a new uid) does not inherit them.
    let mut other = web.clone();
    other.metadata.uid = Some("u2".into());
    assert!(describe(&other, &events, now).ends_with("Events: <none>\n"));
}

#[test]
fn items_wide_show_the_platforms_an_index_offers_else_the_manifests_own() {
    let item = |status: serde_json::Value| -> DynObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "aos.edge/v1alpha1", "kind": "Item",
            "metadata": {"name": "svc"},
            "spec": {"itemId": "svc", "version": "1", "source": {"registry": "r/svc:1"}},
            "status": status,
        }))
        .unwrap()
    };
    let at = headers("Item", true)
        .iter()
        .position(|h| *h == "PLATFORMS")
        .unwrap();
    let now = Utc::now();
    let multi = item(serde_json::json!({"offered": ["linux/amd64", "linux/arm64"]}));
    assert_eq!(row(&multi, true, now, false)[at], "linux/amd64,linux/arm64");
    let single =
        item(serde_json::json!({"config": {"image": {"os": "linux", "architecture": "arm64"}}}));
    assert_eq!(row(&single, true, now, false)[at], "linux/arm64");
    assert_eq!(
        row(&item(serde_json::json!({})), true, now, false)[at],
        "<none>"
    );
    // A status this aosctl cannot read says so rather than looking empty.
    let unreadable = item(serde_json::json!({"offered": "linux/amd64"}));
    assert_eq!(row(&unreadable, true, now, false)[at], "<unknown>");
}
