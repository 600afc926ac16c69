//! The Prometheus endpoint end to end: aosd with `[metrics]` on a free loopback port, one
//! instance running; `/metrics` parses line by line as the text format, holds the controller,
//! store, node and instance series and the phase histograms (also in status), and an instance
//! that is deleted leaves no series behind.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use aos_e2e::node::{free_port, instance, service, Node};
use prometheus_parse::{LineInfo, Scrape, Value};

/// `GET /metrics`: the content type and the body.
fn get(port: u16) -> (String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (ctype, body.to_string())
}

/// Parses strictly: every line is a comment or a sample with a number, every sample's family
/// has a TYPE, and the exposition ends with `# EOF`.
fn parse(body: &str) -> Scrape {
    let mut typed = Vec::new();
    for line in body.lines() {
        match LineInfo::parse(line) {
            LineInfo::Type {
                metric_name,
                metric_alias,
                ..
            } => typed.extend([Some(metric_name), metric_alias].into_iter().flatten()),
            LineInfo::Sample {
                metric_name, value, ..
            } => {
                assert!(value.parse::<f64>().is_ok(), "not a number: {line}");
                assert!(
                    typed.iter().any(|t| metric_name.starts_with(t.as_str())),
                    "no TYPE for {line}"
                );
            }
            LineInfo::Doc { .. } | LineInfo::Empty => {}
            LineInfo::Ignored => assert!(line.starts_with('#'), "unreadable line: {line}"),
        }
    }
    assert_eq!(body.lines().last(), Some("# EOF"));
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap()
}

fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn metrics_parse_and_show_controllers_store_node_and_instances() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let node = Node::start(&format!(
        "[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    let dir = service(
        &tmp.path().join("idle"),
        "configuration:\n  cmd: /usr/bin/svc.sh\n",
        "#!/bin/sh\nexec sleep 600\n",
    );
    node.install(&dir, "idle");
    node.apply(&instance("idle-0", "idle", "v1", 0, ""));
    node.active("idle-0");
    node.until_instance("idle-0", 30, |v| v["status"]["usage"].is_object());
    let (ctype, body) = get(port);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    let s = parse(&body);
    let ok = [("kind", "Instance"), ("result", "ok")];
    assert!(
        value(&s, "aosd_controller_reconciles_total", &ok).unwrap() >= 1.0,
        "{body}"
    );
    let observed = value(
        &s,
        "aosd_controller_reconcile_duration_seconds",
        &[("kind", "Item")],
    );
    assert!(observed.unwrap() >= 1.0, "{body}");
    assert!(value(&s, "aosd_controller_queue_depth", &[("kind", "Instance")]).is_some());
    let active = [("instance", "idle-0"), ("state", "active")];
    assert_eq!(
        value(&s, "aosd_instance_state", &active),
        Some(1.0),
        "{body}"
    );
    assert!(value(&s, "aosd_instance_ram_bytes", &[("instance", "idle-0")]).unwrap() > 0.0);
    assert_eq!(
        value(&s, "aosd_store_objects", &[("kind", "Instance")]),
        Some(1.0)
    );
    assert_eq!(
        value(&s, "aosd_store_objects", &[("kind", "Item")]),
        Some(1.0)
    );
    assert!(value(&s, "aosd_store_revision", &[]).unwrap() > 0.0);
    assert!(value(&s, "aosd_node_ram_total_bytes", &[]).unwrap() > 0.0);
    assert_eq!(value(&s, "aosd_store_damaged_records", &[]), Some(0.0));
    // Each phase of the pull and the start is timed, in the histograms and in status.
    for (kind, phase) in [
        ("Item", "resolve"),
        ("Item", "pull"),
        ("Layer", "download"),
        ("Layer", "unpack"),
        ("Layer", "verify"),
        ("Instance", "start"),
        ("Instance", "ready"),
    ] {
        let labels = [("kind", kind), ("phase", phase)];
        let n = value(&s, "aosd_phase_duration_seconds", &labels);
        assert!(n >= Some(1.0), "{kind} {phase}: {body}");
    }
    assert!(value(&s, "aosd_downloaded_bytes_total", &[("kind", "Layer")]).unwrap() > 0.0);
    let item = node.aosd.json("item", "idle-v1");
    let ms = &item["status"]["phaseMillis"];
    assert!(ms["resolve"].is_u64() && ms["pull"].is_u64(), "{item:#}");
    let inst = node.aosd.json("instance", "idle-0");
    let ms = &inst["status"]["phaseMillis"];
    assert!(ms["start"].is_u64() && ms["ready"] == 0, "{inst:#}");
    let layer = &item["status"]["layers"][0];
    let layer = node.aosd.json("layer", layer.as_str().unwrap());
    let ms = &layer["status"]["phaseMillis"];
    assert!(
        ms["download"].is_u64() && ms["unpack"].is_u64(),
        "{layer:#}"
    );
    node.aosd.ok(&["delete", "instance", "idle-0", "--wait"]);
    let (_, body) = get(port);
    let s = parse(&body);
    assert!(!body.contains("idle-0"), "{body}");
    assert_eq!(
        value(&s, "aosd_store_objects", &[("kind", "Instance")]),
        Some(0.0)
    );
    assert_eq!(node.containers().trim(), "");
}
