//! The node's and the instances' rules over the usage in their status: values in percent of
//! the quota or of the node, each sample taken once, rules that change start over, and an
//! instance that goes takes its state with it.
// A test: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use aos_api::itemconfig::{ImageRun, Quotas, RunConfig};
use aos_api::{
    AlertRule, AlertRules, AosDuration, InstanceSpec, InstanceUsage, ItemConfig, ItemSpec,
    NodeSpec, NodeUsage, Object, PartitionAlertRule, PartitionUsage,
};
use aos_monitor::alerts::Alerts;
use aos_monitor::rule::Transition;
use chrono::{DateTime, Utc};

fn at(s: i64) -> DateTime<Utc> {
    DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(s)
}

fn rule(min: f64, max: f64, timeout_s: u64) -> AlertRule {
    AlertRule {
        min_timeout: AosDuration::from_secs(timeout_s),
        min_threshold: min,
        max_threshold: max,
    }
}

fn node(rules: AlertRules, ram_used: u64, data_used: u64, t: i64) -> Object<NodeSpec> {
    let mut n = Object::new(
        "node-1",
        NodeSpec {
            alert_rules: Some(rules),
            ..Default::default()
        },
    );
    n.status.total_ram = 1000;
    n.status.dmips = 10_000;
    n.status.usage = Some(NodeUsage {
        cpu_percent: 5.0,
        cpu_dmips: 500,
        ram_used,
        partitions: vec![PartitionUsage {
            name: "data".into(),
            path: "/var".into(),
            total_size: 200,
            used_size: data_used,
        }],
        updated_at: Some(at(t)),
    });
    n
}

fn transitions(f: &[aos_monitor::alerts::Fired]) -> Vec<(String, Transition)> {
    f.iter()
        .map(|f| (f.parameter.clone(), f.transition))
        .collect()
}

#[test]
fn node_ram_and_partitions_are_checked_in_percent_of_their_totals() {
    let rules = AlertRules {
        ram: Some(rule(80.0, 90.0, 1)),
        partitions: vec![PartitionAlertRule {
            name: "data".into(),
            rule: rule(50.0, 75.0, 0),
        }],
        ..Default::default()
    };
    let mut a = Alerts::default();
    assert!(a.node(&node(rules.clone(), 950, 100, 0)).is_empty());
    let fired = a.node(&node(rules.clone(), 950, 160, 2));
    assert_eq!(
        transitions(&fired),
        [
            ("ram".to_string(), Transition::Raise),
            ("data".to_string(), Transition::Raise)
        ]
    );
    assert_eq!(fired[0].value, 95.0);
    assert_eq!(fired[0].reason(), "AlertRaised");
    assert_eq!(fired[0].message(), "ram at 95.0%: at or above 90% for 1s");
    assert_eq!(fired[1].value, 80.0);
    // The same sample again (a status write without a new sample) fires nothing.
    assert!(a.node(&node(rules.clone(), 950, 160, 2)).is_empty());
    // Below the minimum for the timeout: both fall.
    assert!(transitions(&a.node(&node(rules.clone(), 100, 10, 4)))
        .contains(&("data".to_string(), Transition::Fall)));
    let fired = a.node(&node(rules, 100, 10, 6));
    assert_eq!(transitions(&fired), [("ram".to_string(), Transition::Fall)]);
    assert_eq!(fired[0].message(), "ram below 80% for 1s");
}

#[test]
fn a_changed_rule_starts_over() {
    let mut a = Alerts::default();
    let strict = AlertRules {
        ram: Some(rule(10.0, 20.0, 0)),
        ..Default::default()
    };
    assert_eq!(a.node(&node(strict, 500, 0, 0)).len(), 1);
    let loose = AlertRules {
        ram: Some(rule(80.0, 90.0, 0)),
        ..Default::default()
    };
    // At 50 % the loose rule is not in alert, and a new rule does not "fall" from the old one.
    assert!(a.node(&node(loose, 500, 0, 1)).is_empty());
}

fn item(rules: AlertRules, quotas: Quotas) -> Object<ItemSpec> {
    let mut i = Object::new(
        "hog-v1",
        ItemSpec {
            item_id: "hog".into(),
            version: "v1".into(),
            ..Default::default()
        },
    );
    i.status.config = Some(RunConfig {
        image: ImageRun::default(),
        item: Some(ItemConfig {
            alert_rules: Some(rules),
            quotas,
            ..Default::default()
        }),
    });
    i
}

fn instance(ram: u64, rx: u64, t: i64) -> Object<InstanceSpec> {
    let mut i = Object::new(
        "hog-0",
        InstanceSpec {
            item_id: "hog".into(),
            version: "v1".into(),
            ..Default::default()
        },
    );
    i.metadata.uid = Some("u-7".into());
    i.status.usage = Some(InstanceUsage {
        ram_bytes: ram,
        rx_bytes: rx,
        updated_at: at(t),
        ..Default::default()
    });
    i
}

#[test]
fn instance_ram_is_a_share_of_its_quota_and_traffic_is_in_bytes() {
    let mut a = Alerts::default();
    a.node(&node(AlertRules::default(), 0, 0, 0));
    let rules = AlertRules {
        ram: Some(rule(50.0, 60.0, 0)),
        download: Some(rule(1000.0, 5000.0, 0)),
        ..Default::default()
    };
    let quotas = Quotas {
        ram_limit: Some(200),
        ..Default::default()
    };
    a.item(&item(rules, quotas));
    // 130 of a 200-byte quota is 65 %: raised (65 % of the node's 1000 would not be).
    let fired = a.instance(&instance(130, 100, 1));
    assert_eq!(
        transitions(&fired),
        [("ram".to_string(), Transition::Raise)]
    );
    assert_eq!((fired[0].kind, fired[0].uid.as_str()), ("Instance", "u-7"));
    assert_eq!(fired[0].value, 65.0);
    let fired = a.instance(&instance(20, 6000, 2));
    assert_eq!(
        transitions(&fired),
        [
            ("ram".to_string(), Transition::Fall),
            ("download".to_string(), Transition::Raise)
        ]
    );
    assert_eq!(
        fired[1].message(),
        "download at 6000.0 B: at or above 5000 B for 0s"
    );
    // A deleted instance forgets its alerts: the same name starts afresh.
    a.instance_deleted("hog-0");
    let fired = a.instance(&instance(20, 6000, 1));
    assert_eq!(
        transitions(&fired),
        [("download".to_string(), Transition::Raise)]
    );
}

#[test]
fn an_instance_without_a_quota_is_measured_against_the_node_and_one_without_rules_is_left_alone() {
    let mut a = Alerts::default();
    a.node(&node(AlertRules::default(), 0, 0, 0));
    a.item(&item(
        AlertRules {
            ram: Some(rule(50.0, 60.0, 0)),
            ..Default::default()
        },
        Quotas::default(),
    ));
    assert!(a.instance(&instance(130, 0, 1)).is_empty());
    assert_eq!(a.instance(&instance(700, 0, 2)).len(), 1);
    let mut plain = instance(900, 0, 3);
    plain.spec.item_id = "other".into();
    assert!(a.instance(&plain).is_empty());
}

#[test]
fn a_steady_value_without_new_samples_is_raised_once_its_timeout_passes() {
    let mut a = Alerts::default();
    a.node(&node(AlertRules::default(), 0, 0, 0));
    let rules = AlertRules {
        ram: Some(rule(50.0, 60.0, 10)),
        ..Default::default()
    };
    let quotas = Quotas {
        ram_limit: Some(200),
        ..Default::default()
    };
    a.item(&item(rules, quotas));
    // 65 % of the quota from t=1, and no further status write: the value holds.
    assert!(a.instance(&instance(130, 0, 1)).is_empty());
    assert!(a.hold(at(5)).is_empty(), "within the timeout");
    let fired = a.hold(at(12));
    assert_eq!(
        transitions(&fired),
        [("ram".to_string(), Transition::Raise)]
    );
    assert_eq!(fired[0].value, 65.0);
    // Holding at a time already seen feeds nothing; a gone instance is not held.
    assert!(a.hold(at(12)).is_empty());
    a.instance_deleted("hog-0");
    assert!(a.hold(at(30)).is_empty());
}
