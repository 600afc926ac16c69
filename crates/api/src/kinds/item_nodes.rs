//! An Item's status in a unit: each node's entry, and the top-level phase, progress and `Ready`
//! condition summed up from them.

use crate::condition::{self as c, reason as r};
use crate::{ConditionStatus, ItemOnNode, ItemPhase, ItemStatus, Progress};

impl ItemStatus {
    /// The Item's phase on `node` (`None`: a node of its own, where the top-level phase is
    /// the node's).
    pub fn phase_on(&self, node: Option<&str>) -> ItemPhase {
        match node {
            None => self.phase,
            Some(n) => self.nodes.get(n).map_or(ItemPhase::Pending, |e| e.phase),
        }
    }

    /// Records node `node`'s entry (`None`: it has no copy) and sums the nodes up into the
    /// top-level phase, progress and `Ready` condition.
    pub fn set_node(&mut self, node: &str, entry: Option<ItemOnNode>) {
        match entry {
            Some(e) => {
                self.nodes.insert(node.to_string(), e);
            }
            None => {
                self.nodes.remove(node);
            }
        }
        self.summarize_nodes();
        let n = self.nodes.len();
        let ready = self
            .nodes
            .values()
            .filter(|e| e.phase == ItemPhase::Ready)
            .count();
        let (status, reason, message) = match self.phase {
            ItemPhase::Ready => (
                ConditionStatus::True,
                r::LAYERS_READY.to_string(),
                format!("every layer is stored on each of the {n} nodes that run it"),
            ),
            ItemPhase::Failed => {
                let (node, e) = self
                    .nodes
                    .iter()
                    .find(|(_, e)| e.phase == ItemPhase::Failed)
                    .map(|(k, e)| (k.clone(), e.clone()))
                    .unwrap_or_default();
                (
                    ConditionStatus::False,
                    e.reason,
                    format!("on node {node}: {}", e.message),
                )
            }
            ItemPhase::Pending => (
                ConditionStatus::False,
                r::NOT_PLACED.to_string(),
                "no node runs an instance of it yet: nothing is fetched".to_string(),
            ),
            _ => (
                ConditionStatus::False,
                r::DOWNLOADING.to_string(),
                format!("ready on {ready} of the {n} nodes that run it"),
            ),
        };
        self.common
            .set_condition(c::READY, status, &reason, &message, chrono::Utc::now());
    }

    /// The top-level phase of an Item in a unit, from its nodes: Failed if it failed on one,
    /// Ready when every node that needs it has it, else Downloading; Pending when no node
    /// needs it yet (resolved, nothing fetched).
    pub fn summarize_nodes(&mut self) {
        let entries: Vec<&ItemOnNode> = self.nodes.values().collect();
        self.phase = if entries.is_empty() {
            ItemPhase::Pending
        } else if entries.iter().any(|e| e.phase == ItemPhase::Failed) {
            ItemPhase::Failed
        } else if entries.iter().all(|e| e.phase == ItemPhase::Ready) {
            ItemPhase::Ready
        } else {
            ItemPhase::Downloading
        };
        self.progress = (!entries.is_empty()).then(|| Progress {
            done_bytes: entries
                .iter()
                .filter_map(|e| e.progress.as_ref())
                .map(|p| p.done_bytes)
                .sum(),
            total_bytes: entries
                .iter()
                .filter_map(|e| e.progress.as_ref())
                .map(|p| p.total_bytes)
                .sum(),
        });
    }
}
