//! `monitoringData`: the node's and the instances' usage, averaged over the window between two
//! sends, as the reference reports it (CPU in DMIPS, RAM and partitions in bytes, traffic in
//! bytes; the node's CPU and RAM at least the sum of its instances'). Fed each new sample the
//! store holds (the controllers write them into status); pure.

use std::collections::BTreeMap;

use aos_api::{InstanceSpec, NodeSpec, Object};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::protocol::Ident;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PartitionUsage {
    pub name: String,
    pub used_size: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Usage {
    pub timestamp: Option<DateTime<Utc>>,
    /// DMIPS.
    pub cpu: f64,
    pub ram: u64,
    pub partitions: Vec<PartitionUsage>,
    pub download: u64,
    pub upload: u64,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceUsage {
    pub item: Ident,
    pub subject: Ident,
    pub instance: u64,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeMonitoring {
    pub node_id: String,
    pub node_monitoring: Usage,
    pub instances: Vec<InstanceUsage>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct MonitoringData {
    pub nodes: Vec<NodeMonitoring>,
}

/// One sample: CPU, RAM, and used bytes by partition.
type Held = (f64, u64, Vec<(String, u64)>);

/// Sums of the samples of one object in the window.
#[derive(Clone, Debug, Default)]
struct Sums {
    n: u64,
    cpu: f64,
    ram: f64,
    partitions: BTreeMap<String, f64>,
    /// Traffic counters are totals: the latest is kept.
    download: u64,
    upload: u64,
    last: Option<DateTime<Utc>>,
    /// The last sample (CPU, RAM, partitions): it holds in a window without a new one, since
    /// a status carries a new sample only when the usage moved by more than the node's step.
    held: Option<Held>,
}

impl Sums {
    fn add(&mut self, at: DateTime<Utc>, cpu: f64, ram: u64, parts: &[(String, u64)]) -> bool {
        if self.last.is_some_and(|l| at <= l) {
            return false;
        }
        self.last = Some(at);
        self.held = Some((cpu, ram, parts.to_vec()));
        self.n += 1;
        self.cpu += cpu;
        self.ram += ram as f64;
        for (name, used) in parts {
            *self.partitions.entry(name.clone()).or_default() += *used as f64;
        }
        true
    }

    /// The window's average; the last sample when the window had none.
    fn average(&self) -> Usage {
        if self.n == 0 {
            if let Some((cpu, ram, parts)) = &self.held {
                let one = Sums {
                    n: 1,
                    cpu: *cpu,
                    ram: *ram as f64,
                    partitions: parts.iter().map(|(k, v)| (k.clone(), *v as f64)).collect(),
                    held: None,
                    ..self.clone()
                };
                return one.average();
            }
        }
        let n = self.n.max(1) as f64;
        Usage {
            timestamp: self.last,
            cpu: (self.cpu / n * 10.0).round() / 10.0,
            ram: (self.ram / n) as u64,
            partitions: self
                .partitions
                .iter()
                .map(|(name, s)| PartitionUsage {
                    name: name.clone(),
                    used_size: (s / n) as u64,
                })
                .collect(),
            download: self.download,
            upload: self.upload,
        }
    }
}

/// The window being averaged.
#[derive(Debug, Default)]
pub struct Averager {
    node: Sums,
    /// By instance name: (item, subject, index) and sums.
    instances: BTreeMap<String, ((String, String, u64), Sums)>,
}

impl Averager {
    /// Takes the Node's latest sample (once).
    pub fn node(&mut self, n: &Object<NodeSpec>) {
        let Some(u) = &n.status.usage else { return };
        let Some(at) = u.updated_at else { return };
        let parts: Vec<(String, u64)> = u
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.used_size))
            .collect();
        self.node.add(at, u.cpu_dmips as f64, u.ram_used, &parts);
    }

    /// Takes an Instance's latest sample (once).
    pub fn instance(&mut self, i: &Object<InstanceSpec>) {
        let Some(u) = &i.status.usage else { return };
        let key = (
            i.spec.item_id.clone(),
            i.spec.subject_id.clone(),
            i.spec.index,
        );
        let (_, sums) = self
            .instances
            .entry(i.name().to_string())
            .or_insert_with(|| (key, Sums::default()));
        let parts = [
            ("state".to_string(), u.state_bytes),
            ("storage".to_string(), u.storage_bytes),
        ];
        if sums.add(u.updated_at, u.cpu_dmips as f64, u.ram_bytes, &parts) {
            sums.download = u.rx_bytes;
            sums.upload = u.tx_bytes;
        }
    }

    /// Forgets an instance that is gone.
    pub fn instance_deleted(&mut self, name: &str) {
        self.instances.remove(name);
    }

    /// The averages of the window, which starts again; `None` when it saw no sample.
    pub fn take(&mut self, node_id: &str) -> Option<MonitoringData> {
        let mut instances = Vec::new();
        let sampled = |s: &Sums| s.n > 0 || s.held.is_some();
        for ((item, subject, index), sums) in self.instances.values().filter(|(_, s)| sampled(s)) {
            instances.push(InstanceUsage {
                item: Ident { id: item.clone() },
                subject: Ident {
                    id: subject.clone(),
                },
                instance: *index,
                usage: sums.average(),
            });
        }
        if !sampled(&self.node) && instances.is_empty() {
            return None;
        }
        let mut node = self.node.average();
        // The node's totals are at least what its instances use.
        let cpu: f64 = instances.iter().map(|i| i.usage.cpu).sum();
        let ram: u64 = instances.iter().map(|i| i.usage.ram).sum();
        node.cpu = node.cpu.max(cpu);
        node.ram = node.ram.max(ram);
        node.download = instances.iter().map(|i| i.usage.download).sum();
        node.upload = instances.iter().map(|i| i.usage.upload).sum();
        // A new window: the sums go, the last sample times stay (each sample counts once).
        self.node = Sums {
            last: self.node.last,
            held: self.node.held.take(),
            ..Sums::default()
        };
        for (_, s) in self.instances.values_mut() {
            *s = Sums {
                last: s.last,
                download: s.download,
                upload: s.upload,
                held: s.held.take(),
                ..Sums::default()
            };
        }
        Some(MonitoringData {
            nodes: vec![NodeMonitoring {
                node_id: node_id.to_string(),
                node_monitoring: node,
                instances,
            }],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_api::{InstanceUsage as Sample, NodeUsage};

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::seconds(s)
    }

    fn node(t: i64, cpu: u64, ram: u64) -> Object<NodeSpec> {
        let mut n = Object::new("node", NodeSpec::default());
        n.status.usage = Some(NodeUsage {
            cpu_dmips: cpu,
            ram_used: ram,
            updated_at: Some(at(t)),
            ..NodeUsage::default()
        });
        n
    }

    fn inst(t: i64, ram: u64, rx: u64) -> Object<InstanceSpec> {
        let mut i = Object::new(
            "web-0",
            InstanceSpec {
                item_id: "web".into(),
                subject_id: "s".into(),
                ..InstanceSpec::default()
            },
        );
        i.status.usage = Some(Sample {
            cpu_dmips: 100,
            ram_bytes: ram,
            rx_bytes: rx,
            updated_at: at(t),
            ..Sample::default()
        });
        i
    }

    #[test]
    fn a_window_averages_each_sample_once_and_starts_again() {
        let mut a = Averager::default();
        assert_eq!(a.take("n1"), None);
        a.node(&node(1, 1000, 100));
        a.node(&node(1, 1000, 100));
        a.node(&node(2, 3000, 300));
        a.instance(&inst(1, 400, 10));
        a.instance(&inst(2, 600, 30));
        let m = a.take("n1").unwrap();
        let n = &m.nodes[0];
        assert_eq!(n.node_id, "n1");
        assert_eq!(n.node_monitoring.cpu, 2000.0);
        // 200 on average, raised to the instances' 500.
        assert_eq!(n.node_monitoring.ram, 500);
        assert_eq!(n.node_monitoring.download, 30);
        assert_eq!(n.instances[0].usage.ram, 500);
        assert_eq!(n.instances[0].item.id, "web");
        // The same samples again count for nothing: a window without a new sample reports the
        // last one, which holds (a status is written only when the usage moved).
        a.node(&node(2, 3000, 300));
        let m = a.take("n1").unwrap();
        assert_eq!(m.nodes[0].instances[0].usage.ram, 600);
        assert_eq!(m.nodes[0].node_monitoring.cpu, 3000.0);
        // A new one counts alone.
        a.instance(&inst(3, 100, 40));
        let m = a.take("n1").unwrap();
        assert_eq!(m.nodes[0].instances[0].usage.ram, 100);
        assert_eq!(m.nodes[0].node_monitoring.upload, 0);
        a.instance_deleted("web-0");
        let m = a.take("n1").unwrap();
        assert!(
            m.nodes[0].instances.is_empty(),
            "a deleted instance is not reported"
        );
        assert_eq!(
            Averager::default().take("n1"),
            None,
            "nothing seen, nothing sent"
        );
    }
}
