//! Unit tests of the table printer: durations, the ERROR column, units, alignment.

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
