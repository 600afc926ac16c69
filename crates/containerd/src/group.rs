//! Shim groups: which tasks share one runc v2 shim. containerd starts one Go shim per task
//! unless the task's runtime spec carries the annotation `io.containerd.runc.v2.group`; tasks
//! with the same value share the shim that the first of them started (the way CRI puts a pod's
//! containers in one shim). This module owns the choice: a task joins the first group that has
//! fewer than `size` members, else starts a new one; membership is kept on the container as a
//! label too, so that it is known again after aosd restarts.
//!
//! What a group costs: one shim's crash ends every task of the group (containerd cleans the
//! tasks of a dead shim up and reports their exits), so `size` bounds the blast radius as well
//! as the number of shims.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The runc v2 shim reads this annotation of the runtime spec to pick its shim.
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";
/// The container label that remembers the group.
pub const GROUP_LABEL: &str = "aos.edge/shim-group";

/// Groups and their members (container ids), as this process knows them.
#[derive(Debug, Default)]
pub(crate) struct Groups {
    members: BTreeMap<String, BTreeSet<String>>,
}

impl Groups {
    /// The groups of existing containers, from their labels.
    pub(crate) fn from_labels<'a>(
        containers: impl IntoIterator<Item = (&'a str, &'a HashMap<String, String>)>,
    ) -> Self {
        let mut g = Groups::default();
        for (id, labels) in containers {
            if let Some(group) = labels.get(GROUP_LABEL) {
                g.members
                    .entry(group.clone())
                    .or_default()
                    .insert(id.to_string());
            }
        }
        g
    }

    /// The group of `id`: the one it is in already, else the first group with room (groups of
    /// `size` members at most), else a new group under the smallest free name `shim-<n>`.
    pub(crate) fn assign(&mut self, id: &str, size: usize) -> String {
        if let Some((group, _)) = self.members.iter().find(|(_, m)| m.contains(id)) {
            return group.clone();
        }
        let group = match self.members.iter().find(|(_, m)| m.len() < size.max(1)) {
            Some((group, _)) => group.clone(),
            None => (0..)
                .map(|n| format!("shim-{n}"))
                .find(|name| !self.members.contains_key(name))
                .unwrap_or_default(),
        };
        self.members
            .entry(group.clone())
            .or_default()
            .insert(id.to_string());
        group
    }

    /// `id` left its group (its container is gone); a group left empty is forgotten, its shim
    /// having exited with its last task.
    pub(crate) fn release(&mut self, id: &str) {
        self.members.retain(|_, m| {
            m.remove(id);
            !m.is_empty()
        });
    }

    #[cfg(test)]
    fn sizes(&self) -> Vec<(String, usize)> {
        self.members
            .iter()
            .map(|(g, m)| (g.clone(), m.len()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_fill_a_group_before_a_new_one_starts() {
        let mut g = Groups::default();
        let names: Vec<String> = (0..5).map(|i| g.assign(&format!("t{i}"), 2)).collect();
        assert_eq!(names, ["shim-0", "shim-0", "shim-1", "shim-1", "shim-2"]);
        assert_eq!(g.assign("t3", 2), "shim-1", "a member keeps its group");
    }

    #[test]
    fn a_freed_place_is_taken_before_a_new_group_and_an_empty_group_is_forgotten() {
        let mut g = Groups::default();
        for i in 0..4 {
            g.assign(&format!("t{i}"), 2);
        }
        g.release("t0");
        assert_eq!(g.assign("t9", 2), "shim-0");
        g.release("t2");
        g.release("t3");
        assert_eq!(g.sizes(), [("shim-0".to_string(), 2)]);
        assert_eq!(g.assign("t10", 2), "shim-1", "the free name is used again");
    }

    #[test]
    fn groups_are_known_again_from_container_labels() {
        let labelled = HashMap::from([(GROUP_LABEL.to_string(), "shim-3".to_string())]);
        let plain = HashMap::new();
        let mut g = Groups::from_labels([("a", &labelled), ("b", &labelled), ("c", &plain)]);
        assert_eq!(g.sizes(), [("shim-3".to_string(), 2)]);
        assert_eq!(g.assign("d", 3), "shim-3");
        assert_eq!(g.assign("e", 3), "shim-0");
    }
}
