//! A Network's conditions in a unit: each node's own (its bridge, routes, VLAN, resolver) in
//! `status.nodes`, and the top-level ones summed up from them, so a node that fails is not
//! hidden by another that writes later.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{CommonStatus, Condition, ConditionStatus, NetworkStatus};

/// A Network on one node of a unit.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkOnNode {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

impl NetworkStatus {
    /// Records a condition of the network on `node` (`None`: a node of its own, whose
    /// conditions are the top-level ones) and sums the nodes' conditions of that type up.
    pub fn set_condition_on(
        &mut self,
        node: Option<&str>,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: &str,
        now: DateTime<Utc>,
    ) {
        let Some(node) = node else {
            self.common
                .set_condition(type_, status, reason, message, now);
            return;
        };
        let entry = self.nodes.entry(node.to_string()).or_default();
        let mut own = CommonStatus {
            conditions: std::mem::take(&mut entry.conditions),
            ..Default::default()
        };
        own.set_condition(type_, status, reason, message, now);
        entry.conditions = own.conditions;
        self.sum_up(type_, now);
    }

    /// Drops a node's conditions (it left the unit) and sums the rest up again.
    pub fn forget_node(&mut self, node: &str, now: DateTime<Utc>) {
        let Some(gone) = self.nodes.remove(node) else {
            return;
        };
        for c in gone.conditions {
            self.sum_up(&c.type_, now);
        }
    }

    /// The top-level condition of `type_` from the nodes': `False` where any node's is (the
    /// message names each such node), else `Unknown` where any is, else `True`; none when no
    /// node has one.
    fn sum_up(&mut self, type_: &str, now: DateTime<Utc>) {
        let of_type: Vec<(&String, &Condition)> = self
            .nodes
            .iter()
            .filter_map(|(n, e)| Some((n, e.conditions.iter().find(|c| c.type_ == type_)?)))
            .collect();
        let worst = [ConditionStatus::False, ConditionStatus::Unknown]
            .into_iter()
            .find(|s| of_type.iter().any(|(_, c)| c.status == *s))
            .unwrap_or(ConditionStatus::True);
        let Some(first) = of_type.iter().find(|(_, c)| c.status == worst) else {
            self.common.conditions.retain(|c| c.type_ != type_);
            return;
        };
        let reason = first.1.reason.clone();
        let message = if worst == ConditionStatus::True {
            String::new()
        } else {
            let failing: Vec<String> = of_type
                .iter()
                .filter(|(_, c)| c.status == worst)
                .map(|(n, c)| format!("{n}: {}", c.message))
                .collect();
            failing.join("; ")
        };
        self.common
            .set_condition(type_, worst, &reason, &message, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(s: &NetworkStatus, t: &str) -> (ConditionStatus, String, String) {
        let c = s.common.condition(t).unwrap();
        (c.status, c.reason.clone(), c.message.clone())
    }

    #[test]
    fn a_node_whose_routes_fail_keeps_the_network_condition_false_whoever_writes_last() {
        let now = Utc::now();
        let mut s = NetworkStatus::default();
        let t = "RoutesReady";
        s.set_condition_on(Some("a"), t, ConditionStatus::True, "Routed", "", now);
        s.set_condition_on(
            Some("b"),
            t,
            ConditionStatus::False,
            "NoRoute",
            "10.0.16.0/20",
            now,
        );
        s.set_condition_on(Some("a"), t, ConditionStatus::True, "Routed", "", now);
        assert_eq!(
            cond(&s, t),
            (
                ConditionStatus::False,
                "NoRoute".into(),
                "b: 10.0.16.0/20".into()
            )
        );
        s.set_condition_on(Some("b"), t, ConditionStatus::True, "Routed", "", now);
        assert_eq!(
            cond(&s, t),
            (ConditionStatus::True, "Routed".into(), String::new())
        );
    }

    #[test]
    fn a_departed_nodes_conditions_leave_the_sum() {
        let now = Utc::now();
        let mut s = NetworkStatus::default();
        s.set_condition_on(
            Some("a"),
            "Ready",
            ConditionStatus::True,
            "BridgeUp",
            "",
            now,
        );
        s.set_condition_on(Some("b"), "Ready", ConditionStatus::False, "X", "down", now);
        s.set_condition_on(
            Some("b"),
            "VlanReady",
            ConditionStatus::False,
            "NoUplink",
            "",
            now,
        );
        s.forget_node("b", now);
        assert_eq!(cond(&s, "Ready").0, ConditionStatus::True);
        assert!(s.common.condition("VlanReady").is_none(), "no node has one");
        assert_eq!(s.nodes.keys().collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn a_node_of_its_own_writes_the_top_level_condition() {
        let now = Utc::now();
        let mut s = NetworkStatus::default();
        s.set_condition_on(None, "Ready", ConditionStatus::True, "BridgeUp", "", now);
        assert_eq!(cond(&s, "Ready").0, ConditionStatus::True);
        assert!(s.nodes.is_empty());
    }
}
