//! The unit status the cloud reads, from the store's Items and Instances: item states mapped
//! from their phase, instances grouped by (item, subject, version) with their state and
//! error, and the delta between two statuses (what changed, and what went as `removed`).
//! Pure: the caller lists the objects.

use std::collections::BTreeMap;

use aos_api::condition as c;
use aos_api::{
    ConditionStatus, InstanceSpec, InstanceState as State, ItemPhase, ItemSpec, ItemType, Object,
};

use crate::protocol::{
    Codename, ErrorInfo, Ident, InstanceState, InstancesState, ItemIdent, ItemState, UnitStatus,
};

/// The state the cloud reads for an Item.
fn item_state(o: &Object<ItemSpec>) -> (&'static str, Option<ErrorInfo>) {
    if o.metadata.deletion_timestamp.is_some() {
        return ("removing", None);
    }
    let state = match o.status.phase {
        ItemPhase::Pending => "pending",
        ItemPhase::Resolving | ItemPhase::Downloading => "downloading",
        ItemPhase::Unpacking => "installing",
        ItemPhase::Ready => "installed",
        ItemPhase::Removed => "removed",
        ItemPhase::Failed => {
            let message = o
                .status
                .common
                .condition(c::READY)
                .filter(|c| c.status == ConditionStatus::False)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            return (
                "failed",
                Some(ErrorInfo {
                    message,
                    ..ErrorInfo::default()
                }),
            );
        }
    };
    (state, None)
}

fn instance_state(o: &Object<InstanceSpec>) -> (&'static str, Option<ErrorInfo>) {
    let state = match o.status.state {
        State::Activating => "activating",
        State::Active => "active",
        State::Inactive => "inactive",
        State::Failed => "failed",
    };
    let error = (o.status.state == State::Failed).then(|| {
        let why = o
            .status
            .common
            .condition(c::RUNNING)
            .filter(|c| c.status != ConditionStatus::True)
            .map(|c| format!("{}: {}", c.reason, c.message));
        ErrorInfo {
            exit_code: o
                .status
                .last_exit
                .as_ref()
                .and_then(|e| e.exit_code)
                .map_or(0, i64::from),
            message: why.unwrap_or_default(),
            ..ErrorInfo::default()
        }
    });
    (state, error)
}

/// The whole unit status of this node (`node_id`) from its Items and Instances.
pub fn unit_status(
    node_id: &str,
    items: &[Object<ItemSpec>],
    instances: &[Object<InstanceSpec>],
) -> UnitStatus {
    let mut out = UnitStatus::default();
    for o in items {
        let (state, error_info) = item_state(o);
        out.items.push(ItemState {
            item: ItemIdent {
                id: o.spec.item_id.clone(),
                type_: match o.spec.type_ {
                    ItemType::Service => "service",
                    ItemType::Component => "component",
                }
                .into(),
            },
            version: o.spec.version.clone(),
            state: state.into(),
            error_info,
        });
    }
    let runtime = aos_api::ids::runtime_id("container", node_id).to_string();
    let mut groups: BTreeMap<(String, String, String), Vec<InstanceState>> = BTreeMap::new();
    for o in instances {
        let (state, error_info) = instance_state(o);
        let s = &o.spec;
        groups
            .entry((s.item_id.clone(), s.subject_id.clone(), s.version.clone()))
            .or_default()
            .push(InstanceState {
                node: Codename {
                    codename: node_id.to_string(),
                },
                runtime: Codename {
                    codename: runtime.clone(),
                },
                instance: s.index,
                state_checksum: None,
                state: state.into(),
                error_info,
            });
    }
    for ((item, subject, version), mut instances) in groups {
        instances.sort_by_key(|i| i.instance);
        out.instances.push(InstancesState {
            item: Ident { id: item },
            subject: Ident { id: subject },
            version,
            instances,
        });
    }
    out.items
        .sort_by(|a, b| (&a.item.id, &a.version).cmp(&(&b.item.id, &b.version)));
    out
}

/// What changed from `before` to `now` (items and instance groups that differ, those that
/// went as `removed` / without instances); `None` when nothing did.
pub fn delta(before: &UnitStatus, now: &UnitStatus) -> Option<UnitStatus> {
    let key = |i: &ItemState| (i.item.id.clone(), i.version.clone());
    let group = |g: &InstancesState| (g.item.id.clone(), g.subject.id.clone(), g.version.clone());
    let mut out = UnitStatus {
        is_delta_info: true,
        ..UnitStatus::default()
    };
    for i in &now.items {
        if !before.items.contains(i) {
            out.items.push(i.clone());
        }
    }
    for i in &before.items {
        if !now.items.iter().any(|n| key(n) == key(i)) {
            out.items.push(ItemState {
                state: "removed".into(),
                error_info: None,
                ..i.clone()
            });
        }
    }
    for g in &now.instances {
        if !before.instances.contains(g) {
            out.instances.push(g.clone());
        }
    }
    for g in &before.instances {
        if !now.instances.iter().any(|n| group(n) == group(g)) {
            out.instances.push(InstancesState {
                instances: Vec::new(),
                ..g.clone()
            });
        }
    }
    (!out.items.is_empty() || !out.instances.is_empty()).then_some(out)
}
