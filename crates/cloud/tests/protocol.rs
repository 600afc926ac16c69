//! The protocol against golden fixtures: a desired status written in mixed case with missing
//! defaults reads, writes back canonically (the `.canonical.json` golden) and reads again the
//! same; it maps to the expected resources; a unit status of known objects matches its golden;
//! hostile messages are refused with a reason. `AOS_UPDATE_FIXTURES=1` rewrites the goldens.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use aos_api::{InstanceSpec, InstanceState, ItemPhase, ItemSpec, Object};
use aos_cloud::desired::{self, MapError, Mapping, SlotTargets, MANAGED_BY};
use aos_cloud::protocol::{self, Message, ProtocolError};
use aos_cloud::status;

const MAX: usize = 1 << 20;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Compares `text` with the golden file (or rewrites it when asked to).
fn golden(name: &str, text: &str) {
    let path = fixture(name);
    if std::env::var_os("AOS_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, text).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        text, want,
        "{name} differs; AOS_UPDATE_FIXTURES=1 rewrites it"
    );
}

fn desired() -> protocol::DesiredStatus {
    let text = std::fs::read_to_string(fixture("desired_status.json")).unwrap();
    match protocol::parse(&text, MAX).unwrap() {
        Message::DesiredStatus(d) => d,
        other => panic!("{other:?}"),
    }
}

fn mapping() -> Mapping {
    Mapping {
        registry: "registry.example:5000/aos".into(),
        max_instances: 100,
        slots: SlotTargets {
            name: "node-1".into(),
            boot: Some("os-boot".into()),
            recovery: Some("os-boot".into()),
            rootfs: Some("os-root".into()),
        },
    }
}

#[test]
fn a_desired_status_in_any_case_reads_writes_canonically_and_reads_back_the_same() {
    let d = desired();
    assert_eq!(d.correlation_id, "c-17");
    assert_eq!(d.instances[2].num_instances, 0, "a missing count is none");
    assert_eq!(d.unit_config.as_ref().unwrap().nodes[0].priority, 1);
    let rules = d.unit_config.as_ref().unwrap().nodes[0]
        .alert_rules
        .clone()
        .unwrap();
    assert_eq!(rules.ram.unwrap().min_timeout.0.as_secs(), 10);
    let canonical =
        serde_json::to_string_pretty(&Message::DesiredStatus(d.clone())).unwrap() + "\n";
    golden("desired_status.canonical.json", &canonical);
    assert_eq!(
        protocol::parse(&canonical, MAX).unwrap(),
        Message::DesiredStatus(d)
    );
}

#[test]
fn a_desired_status_maps_to_items_expanded_instances_and_an_owner_network() {
    let r = desired::resources(&desired(), &mapping()).unwrap();
    let items: Vec<_> = r.items.iter().map(|i| i.name().to_string()).collect();
    assert_eq!(items, ["web-server-1.0.0", "logger-2"]);
    let web = &r.items[0].spec;
    assert_eq!(
        web.source.registry.as_deref(),
        Some("registry.example:5000/aos/web-server:1.0.0")
    );
    assert!(web.digest.as_deref().unwrap().starts_with("sha256:1111"));
    assert_eq!(r.items[1].spec.digest, None);
    let names: Vec<_> = r.instances.iter().map(|i| i.name().to_string()).collect();
    assert_eq!(
        names,
        [
            "web-server-kiosk-0",
            "web-server-kiosk-1",
            "web-server-kiosk-2",
            "logger-kiosk-0"
        ]
    );
    let w2 = &r.instances[2];
    assert_eq!((w2.spec.index, w2.spec.priority), (2, 10));
    assert_eq!(w2.spec.version, "1.0.0");
    assert_eq!(w2.spec.network.as_ref().unwrap().network_id, "acme");
    assert_eq!(w2.metadata.annotations[desired::NODE_LABELS], "gpu");
    assert_eq!(
        r.instances[3].spec.network, None,
        "an item without owner joins no network"
    );
    assert_eq!(r.networks.len(), 1);
    assert_eq!(r.networks[0].name(), "acme");
    assert!(r
        .all()
        .iter()
        .all(|o| o.metadata.labels[MANAGED_BY] == "cloud"));
}

#[test]
fn component_items_point_the_configured_slots_and_others_are_items_only() {
    let mut d = desired();
    d.items.push(
        serde_json::from_value(serde_json::json!(
        {"item": {"id": "os-boot", "type": "component"}, "version": "2.0"}))
        .unwrap(),
    );
    d.items.push(
        serde_json::from_value(serde_json::json!(
        {"item": {"id": "os-root", "type": "component"}, "version": "7"}))
        .unwrap(),
    );
    d.items.push(
        serde_json::from_value(serde_json::json!(
        {"item": {"id": "firmware", "type": "component"}, "version": "1"}))
        .unwrap(),
    );
    let r = desired::resources(&d, &mapping()).unwrap();
    let boot = r.boot_slot.as_ref().unwrap();
    assert_eq!(boot.name(), "node-1");
    let target =
        |i: &Option<aos_api::ItemRef>| i.as_ref().map(|i| format!("{}:{}", i.item_id, i.version));
    assert_eq!(target(&boot.spec.item).as_deref(), Some("os-boot:2.0"));
    assert_eq!(target(&boot.spec.recovery).as_deref(), Some("os-boot:2.0"));
    let root = r.rootfs_slot.as_ref().unwrap();
    assert_eq!(target(&root.spec.item).as_deref(), Some("os-root:7"));
    assert_eq!(r.items.len(), 5, "every component is an Item too");
    // Without component items the slots are left alone.
    let r = desired::resources(&desired(), &mapping()).unwrap();
    assert!(r.boot_slot.is_none() && r.rootfs_slot.is_none());
}

#[test]
fn long_ids_make_short_distinct_valid_names() {
    let a = desired::resource_name(&[&"x".repeat(60), &"y".repeat(60), "0"], 63);
    let b = desired::resource_name(&[&"x".repeat(60), &"y".repeat(59), "0"], 63);
    assert!(a.len() <= 63 && b.len() <= 63);
    assert_ne!(a, b);
    assert_eq!(desired::resource_name(&["A_B--c", "Ü"], 63), "a-b-c");
}

#[test]
fn what_the_node_would_refuse_is_refused_whole() {
    let mut d = desired();
    d.instances[0].num_instances = 100_000;
    assert_eq!(
        desired::resources(&d, &mapping()),
        Err(MapError::TooManyInstances {
            n: 100_001,
            max: 100
        })
    );
    let mut d = desired();
    d.instances[1].item.id = "ghost".into();
    let e = desired::resources(&d, &mapping()).unwrap_err();
    assert!(
        e.to_string().contains("\"ghost\" is not among the items"),
        "{e}"
    );
    let mut d = desired();
    d.items[1].item.type_ = "layer".into();
    let e = desired::resources(&d, &mapping()).unwrap_err();
    assert!(
        e.to_string().starts_with("items[1]: item type \"layer\""),
        "{e}"
    );
    let mut d = desired();
    d.items[1].version = String::new();
    assert!(desired::resources(&d, &mapping()).is_err());
}

#[test]
fn hostile_messages_are_refused_with_a_reason() {
    let big = format!(
        r#"{{"messageType": "desiredStatus", "subjects": ["{}"]}}"#,
        "a".repeat(10 << 20)
    );
    assert!(matches!(
        protocol::parse(&big, MAX),
        Err(ProtocolError::TooLarge { .. })
    ));
    let wrong = r#"{"messageType": "desiredStatus", "instances": {"item": 1}}"#;
    assert!(matches!(
        protocol::parse(wrong, MAX),
        Err(ProtocolError::Shape { .. })
    ));
    let unknown = r#"{"messageType": "renewCertificates"}"#;
    assert!(matches!(
        protocol::parse(unknown, MAX),
        Err(ProtocolError::UnknownType(_))
    ));
}

fn item(id: &str, version: &str, phase: ItemPhase) -> Object<ItemSpec> {
    let mut o = Object::new(
        format!("{id}-{version}"),
        ItemSpec {
            item_id: id.into(),
            version: version.into(),
            ..ItemSpec::default()
        },
    );
    o.status.phase = phase;
    o
}

fn inst(item: &str, subject: &str, index: u64, state: InstanceState) -> Object<InstanceSpec> {
    let mut o = Object::new(
        format!("{item}-{subject}-{index}"),
        InstanceSpec {
            item_id: item.into(),
            version: "1".into(),
            subject_id: subject.into(),
            index,
            ..InstanceSpec::default()
        },
    );
    o.status.state = state;
    o
}

#[test]
fn the_unit_status_groups_instances_and_maps_states_and_deltas_say_what_changed() {
    let items = [
        item("web", "1", ItemPhase::Ready),
        item("db", "1", ItemPhase::Downloading),
    ];
    let instances = [
        inst("web", "kiosk", 1, InstanceState::Active),
        inst("web", "kiosk", 0, InstanceState::Active),
        inst("web", "admin", 0, InstanceState::Activating),
    ];
    let full = status::unit_status("node-1", &items, &instances);
    let text = serde_json::to_string_pretty(&Message::UnitStatus(full.clone())).unwrap() + "\n";
    golden("unit_status.json", &text);
    assert_eq!(
        protocol::parse(&text, MAX).unwrap(),
        Message::UnitStatus(full.clone())
    );
    assert_eq!(status::delta(&full, &full), None);
    // db installed, the admin instance gone.
    let items2 = [
        item("web", "1", ItemPhase::Ready),
        item("db", "1", ItemPhase::Ready),
    ];
    let now = status::unit_status("node-1", &items2, &instances[..2]);
    let d = status::delta(&full, &now).unwrap();
    assert!(d.is_delta_info);
    assert_eq!(d.items.len(), 1);
    assert_eq!(
        (d.items[0].item.id.as_str(), d.items[0].state.as_str()),
        ("db", "installed")
    );
    assert_eq!(d.instances.len(), 1);
    assert_eq!(d.instances[0].subject.id, "admin");
    assert!(d.instances[0].instances.is_empty());
    // An item removed is reported as removed.
    let d = status::delta(
        &now,
        &status::unit_status("node-1", &items2[..1], &instances[..2]),
    )
    .unwrap();
    assert_eq!(
        (d.items[0].item.id.as_str(), d.items[0].state.as_str()),
        ("db", "removed")
    );
}
