//! The alert rules of the node (`Node.spec.alertRules`) and of each instance (its item
//! config's `alertRules`) applied to the usage the controllers write into status: one
//! [`Processor`] per (object, parameter), fed each new sample once. Pure: the caller feeds
//! objects and records what fires.

use std::collections::{BTreeMap, HashMap};

use aos_api::{AlertRules, InstanceSpec, ItemConfig, ItemSpec, NodeSpec, Object};
use chrono::{DateTime, Utc};

use crate::rule::{Processor, Thresholds, Transition};

/// What one rule said about one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Fired {
    /// `Node` or `Instance`.
    pub kind: &'static str,
    pub name: String,
    pub uid: String,
    /// `cpu`, `ram`, `download`, `upload`, or a partition's name.
    pub parameter: String,
    pub value: f64,
    /// `%` (of the quota or the node's total) or ` B` (bytes).
    pub unit: &'static str,
    pub rule: Thresholds,
    pub transition: Transition,
}

impl Fired {
    /// The CamelCase reason of its Event.
    pub fn reason(&self) -> &'static str {
        match self.transition {
            Transition::Raise => "AlertRaised",
            Transition::Continue => "AlertContinues",
            Transition::Fall => "AlertFell",
        }
    }

    /// The message of its Event: a raise says the value; a continue or a fall says only the
    /// rule, so that their repeats count in one Event.
    pub fn message(&self) -> String {
        let (p, u, r) = (&self.parameter, self.unit, &self.rule);
        let d = humantime(r.min_timeout);
        match self.transition {
            Transition::Raise => format!(
                "{p} at {:.1}{u}: at or above {}{u} for {d}",
                self.value, r.max
            ),
            Transition::Continue => format!("{p} still at or above {}{u}", r.min),
            Transition::Fall => format!("{p} below {}{u} for {d}", r.min),
        }
    }
}

fn humantime(d: std::time::Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The sample of one parameter: its value and unit.
type Sample = (String, f64, &'static str);

/// The state of every rule of the node and its instances.
#[derive(Default)]
pub struct Alerts {
    node: Option<Object<NodeSpec>>,
    /// Item config by (item id, version).
    items: HashMap<(String, String), ItemConfig>,
    /// By (kind, name, parameter).
    series: HashMap<(&'static str, String, String), Processor>,
    /// The time of the last sample taken from each object.
    seen: HashMap<(&'static str, String), DateTime<Utc>>,
    /// The latest state of each instance with usage (see [`Alerts::hold`]).
    instances: HashMap<String, Object<InstanceSpec>>,
}

impl Alerts {
    /// Keeps an Item's config (its instances' rules and quotas).
    pub fn item(&mut self, item: &Object<ItemSpec>) {
        let key = (item.spec.item_id.clone(), item.spec.version.clone());
        match item.status.config.as_ref() {
            Some(c) => self.items.insert(key, c.item()),
            None => self.items.remove(&key),
        };
    }

    pub fn item_deleted(&mut self, item: &Object<ItemSpec>) {
        self.items
            .remove(&(item.spec.item_id.clone(), item.spec.version.clone()));
    }

    /// A new state of the node: its rules over its latest usage.
    pub fn node(&mut self, node: &Object<NodeSpec>) -> Vec<Fired> {
        self.node = Some(node.clone());
        let Some(u) = &node.status.usage else {
            return Vec::new();
        };
        let Some(at) = u.updated_at else {
            return Vec::new();
        };
        let mut samples: Vec<Sample> = vec![("cpu".into(), u.cpu_percent, "%")];
        if node.status.total_ram > 0 {
            let ram = percent(u.ram_used, node.status.total_ram);
            samples.push(("ram".into(), ram, "%"));
        }
        for p in &u.partitions {
            if p.total_size > 0 {
                samples.push((p.name.clone(), percent(p.used_size, p.total_size), "%"));
            }
        }
        let rules = node.spec.alert_rules.clone().unwrap_or_default();
        let uid = node.metadata.uid.clone().unwrap_or_default();
        self.feed("Node", node.name(), &uid, at, &rules, samples)
    }

    /// A new state of an instance: its item's rules over its latest usage.
    pub fn instance(&mut self, inst: &Object<InstanceSpec>) -> Vec<Fired> {
        let Some(u) = &inst.status.usage else {
            return Vec::new();
        };
        let key = (inst.spec.item_id.clone(), inst.spec.version.clone());
        let Some(config) = self.items.get(&key) else {
            return Vec::new();
        };
        let Some(rules) = config.alert_rules.clone() else {
            return Vec::new();
        };
        self.instances.insert(inst.name().to_string(), inst.clone());
        let q = &config.quotas;
        let (node_dmips, node_ram) = self
            .node
            .as_ref()
            .map_or((0, 0), |n| (n.status.dmips, n.status.total_ram));
        let mut samples: Vec<Sample> = Vec::new();
        let cpu_of = q.cpu_dmips_limit.unwrap_or(node_dmips);
        if cpu_of > 0 {
            samples.push(("cpu".into(), percent(u.cpu_dmips, cpu_of), "%"));
        }
        let ram_of = q.ram_limit.unwrap_or(node_ram);
        if ram_of > 0 {
            samples.push(("ram".into(), percent(u.ram_bytes, ram_of), "%"));
        }
        for (name, used, limit) in [
            ("state", u.state_bytes, q.state_limit),
            ("storage", u.storage_bytes, q.storage_limit),
        ] {
            if let Some(l) = limit.filter(|l| *l > 0) {
                samples.push((name.into(), percent(used, l), "%"));
            }
        }
        samples.push(("download".into(), u.rx_bytes as f64, " B"));
        samples.push(("upload".into(), u.tx_bytes as f64, " B"));
        let uid = inst.metadata.uid.clone().unwrap_or_default();
        self.feed("Instance", inst.name(), &uid, u.updated_at, &rules, samples)
    }

    /// The instances' usage still holds at `now`: a status carries a new sample only when its
    /// usage moved by more than the node's step, so between samples the last value stands and
    /// a rule's time runs on over it (a steady hog is raised after its timeout without a
    /// further write).
    pub fn hold(&mut self, now: DateTime<Utc>) -> Vec<Fired> {
        let held: Vec<Object<InstanceSpec>> = self.instances.values().cloned().collect();
        let mut fired = Vec::new();
        for mut inst in held {
            if let Some(u) = inst.status.usage.as_mut().filter(|u| u.updated_at < now) {
                u.updated_at = now;
                fired.extend(self.instance(&inst));
            }
        }
        fired
    }

    /// Forgets an instance that is gone.
    pub fn instance_deleted(&mut self, name: &str) {
        self.instances.remove(name);
        self.series
            .retain(|(k, n, _), _| !(*k == "Instance" && n == name));
        self.seen.remove(&("Instance", name.to_string()));
    }

    fn feed(
        &mut self,
        kind: &'static str,
        name: &str,
        uid: &str,
        at: DateTime<Utc>,
        rules: &AlertRules,
        samples: Vec<Sample>,
    ) -> Vec<Fired> {
        // Each sample once: a status write that did not take a new sample feeds nothing.
        if let Some(prev) = self.seen.insert((kind, name.to_string()), at) {
            if at <= prev {
                self.seen.insert((kind, name.to_string()), prev);
                return Vec::new();
            }
        }
        let by_name = rules_by_parameter(rules);
        let mut fired = Vec::new();
        for (parameter, value, unit) in samples {
            let key = (kind, name.to_string(), parameter.clone());
            let Some(rule) = by_name.get(parameter.as_str()) else {
                self.series.remove(&key);
                continue;
            };
            let p = self
                .series
                .entry(key)
                .or_insert_with(|| Processor::new(*rule));
            // A changed rule starts over.
            if p.rule() != *rule {
                *p = Processor::new(*rule);
            }
            if let Some(transition) = p.sample(value, at) {
                fired.push(Fired {
                    kind,
                    name: name.to_string(),
                    uid: uid.to_string(),
                    parameter,
                    value,
                    unit,
                    rule: *rule,
                    transition,
                });
            }
        }
        fired
    }
}

fn percent(used: u64, total: u64) -> f64 {
    (used as f64 * 1000.0 / total as f64).round() / 10.0
}

fn rules_by_parameter(r: &AlertRules) -> BTreeMap<&str, Thresholds> {
    let mut m: BTreeMap<&str, Thresholds> = r
        .named()
        .map(|(name, rule)| (name, Thresholds::from(rule)))
        .collect();
    for p in &r.partitions {
        m.insert(p.name.as_str(), Thresholds::from(&p.rule));
    }
    m
}
