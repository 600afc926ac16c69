//! A desired status as the resources the node should hold: an Item per item version (its
//! image in the cloud's registry, pinned by `indexDigest`), the Instances of each entry
//! expanded to indexes 0..numInstances−1 (on the network of the item's owner), a Network per
//! owner, and the node's BootSlot/RootfsSlot pointed at the component items configured for
//! them. Everything made here carries the label `aos.edge/managed-by: cloud`: the
//! connector owns those objects and removes the ones a newer desired status no longer names.
//! Pure: nothing here touches the node.

use std::collections::{BTreeMap, BTreeSet};

use aos_api::{
    BootSlotSpec, DynObject, InstanceNetwork, InstanceSpec, ItemRef, ItemSource, ItemSpec,
    ItemType, NetworkSpec, Object, RootfsSlotSpec,
};
use sha2::{Digest, Sha256};

use crate::protocol::DesiredStatus;

/// The label on every object the connector made.
pub const MANAGED_BY: &str = "aos.edge/managed-by";
/// Its value.
pub const CLOUD: &str = "cloud";
/// The annotation with the node labels an instance asks for (comma-separated).
pub const NODE_LABELS: &str = "aos.edge/node-labels";

/// Why a desired status cannot be turned into resources (the node is left as it is).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MapError {
    #[error("{n} instances wanted; this node takes at most {max} from the cloud")]
    TooManyInstances { n: u64, max: u64 },
    #[error("items[{index}]: {message}")]
    Item { index: usize, message: String },
    #[error("instances[{index}]: {message}")]
    Instance { index: usize, message: String },
    #[error("{kind} {name}: {message}")]
    Invalid {
        kind: String,
        name: String,
        message: String,
    },
}

/// How cloud names become resources.
#[derive(Clone, Debug)]
pub struct Mapping {
    /// `host[:port][/prefix]`: an item `id` of version `v` is the image `<registry>/<id>:<v>`.
    pub registry: String,
    /// Most instances one desired status may ask of this node.
    pub max_instances: u64,
    /// Which component items the node's BootSlot and RootfsSlot install.
    pub slots: SlotTargets,
}

/// The component items (by item id) that go to the node's slots, and the slots' name (the
/// node's object name). A component item named nowhere here is stored as an Item only.
#[derive(Clone, Debug, Default)]
pub struct SlotTargets {
    pub name: String,
    /// The boot component of the A/B pair.
    pub boot: Option<String>,
    /// The boot component of the recovery entry.
    pub recovery: Option<String>,
    /// The rootfs component.
    pub rootfs: Option<String>,
}

/// The resources of one desired status, in the order they are applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resources {
    pub networks: Vec<Object<NetworkSpec>>,
    pub items: Vec<Object<ItemSpec>>,
    pub instances: Vec<Object<InstanceSpec>>,
    /// The node's slots, with the components they should install (fields the cloud sets:
    /// `item`, `recovery`; the slots themselves are never deleted by the cloud).
    pub boot_slot: Option<Object<BootSlotSpec>>,
    pub rootfs_slot: Option<Object<RootfsSlotSpec>>,
}

impl Resources {
    /// Every object, untyped, networks first and instances last.
    pub fn all(&self) -> Vec<DynObject> {
        let mut v: Vec<DynObject> = self.networks.iter().map(Object::to_dyn).collect();
        v.extend(self.items.iter().map(Object::to_dyn));
        v.extend(self.instances.iter().map(Object::to_dyn));
        v.extend(self.boot_slot.iter().map(Object::to_dyn));
        v.extend(self.rootfs_slot.iter().map(Object::to_dyn));
        v
    }
}

/// A resource name from cloud ids: lowercase letters, digits and single '-' or '.', at most
/// `max` characters (a digest of the whole keeps long ones apart).
pub fn resource_name(parts: &[&str], max: usize) -> String {
    let joined = parts.join("-");
    let mut name = String::new();
    for c in joined.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' {
            c
        } else {
            '-'
        };
        let sep = |c: char| c == '-' || c == '.';
        if sep(c) && (name.is_empty() || name.ends_with(sep)) {
            continue;
        }
        name.push(c);
    }
    while name.ends_with(['-', '.']) {
        name.pop();
    }
    if name.len() > max {
        let digest = Sha256::digest(joined.as_bytes());
        let hex: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
        name.truncate(max - hex.len() - 1);
        while name.ends_with(['-', '.']) {
            name.pop();
        }
        name = format!("{name}-{hex}");
    }
    name
}

fn managed<S: aos_api::Spec>(mut o: Object<S>) -> Object<S> {
    o.metadata
        .labels
        .insert(MANAGED_BY.to_string(), CLOUD.to_string());
    o
}

fn item_type(t: &str) -> Result<ItemType, String> {
    match t.to_ascii_lowercase().as_str() {
        "" | "service" => Ok(ItemType::Service),
        "component" => Ok(ItemType::Component),
        other => Err(format!(
            "item type {other:?} is not run by this node (service, component)"
        )),
    }
}

/// Points the node's slot that installs component `id` at `version`.
fn target_slot(out: &mut Resources, t: &SlotTargets, id: &str, version: &str) {
    let to = || {
        Some(ItemRef {
            item_id: id.to_string(),
            version: version.to_string(),
        })
    };
    let is = |x: &Option<String>| x.as_deref() == Some(id);
    if is(&t.boot) || is(&t.recovery) {
        let slot = out
            .boot_slot
            .get_or_insert_with(|| Object::new(&t.name, BootSlotSpec::default()));
        if is(&t.boot) {
            slot.spec.item = to();
        }
        if is(&t.recovery) {
            slot.spec.recovery = to();
        }
    }
    if is(&t.rootfs) {
        out.rootfs_slot = Some(Object::new(&t.name, RootfsSlotSpec { item: to() }));
    }
}

/// The resources `d` asks of this node.
pub fn resources(d: &DesiredStatus, m: &Mapping) -> Result<Resources, MapError> {
    let wanted: u64 = d
        .instances
        .iter()
        .map(|i| i.num_instances)
        .fold(0, u64::saturating_add);
    if wanted > m.max_instances {
        return Err(MapError::TooManyInstances {
            n: wanted,
            max: m.max_instances,
        });
    }
    let mut out = Resources::default();
    // Item id → (version, owner).
    let mut versions: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for (index, it) in d.items.iter().enumerate() {
        let err = |message: String| MapError::Item { index, message };
        if it.item.id.is_empty() || it.version.is_empty() {
            return Err(err("an item needs an id and a version".into()));
        }
        let type_ = item_type(&it.item.type_).map_err(err)?;
        if versions
            .insert(&it.item.id, (&it.version, &it.owner.id))
            .is_some()
        {
            return Err(err(format!("item {:?} is named twice", it.item.id)));
        }
        let spec = ItemSpec {
            item_id: it.item.id.clone(),
            version: it.version.clone(),
            type_,
            source: ItemSource {
                registry: Some(format!(
                    "{}/{}:{}",
                    m.registry.trim_end_matches('/'),
                    it.item.id.to_ascii_lowercase(),
                    it.version
                )),
                ..ItemSource::default()
            },
            digest: Some(it.index_digest.clone()).filter(|d| !d.is_empty()),
        };
        let name = resource_name(&[&it.item.id, &it.version], 253);
        if type_ == ItemType::Component {
            target_slot(&mut out, &m.slots, &it.item.id, &it.version);
        }
        out.items.push(managed(Object::new(name, spec)));
    }
    let mut owners = BTreeSet::new();
    for (index, inst) in d.instances.iter().enumerate() {
        let err = |message: String| MapError::Instance { index, message };
        let Some((version, owner)) = versions.get(inst.item.id.as_str()) else {
            return Err(err(format!(
                "item {:?} is not among the items",
                inst.item.id
            )));
        };
        let network = (!owner.is_empty()).then(|| {
            owners.insert(*owner);
            InstanceNetwork {
                network_id: resource_name(&[owner], 63),
                ..InstanceNetwork::default()
            }
        });
        for i in 0..inst.num_instances {
            let spec = InstanceSpec {
                item_id: inst.item.id.clone(),
                version: (*version).to_string(),
                subject_id: inst.subject.id.clone(),
                index: i,
                priority: inst.priority,
                network: network.clone(),
                ..InstanceSpec::default()
            };
            let name = resource_name(&[&inst.item.id, &inst.subject.id, &i.to_string()], 63);
            let mut o = managed(Object::new(name, spec));
            if !inst.labels.is_empty() {
                o.metadata
                    .annotations
                    .insert(NODE_LABELS.to_string(), inst.labels.join(","));
            }
            out.instances.push(o);
        }
    }
    for owner in owners {
        let name = resource_name(&[owner], 63);
        out.networks
            .push(managed(Object::new(name, NetworkSpec::default())));
    }
    // What the API server would refuse is refused here, by object.
    for o in out.all() {
        if let Err(e) = aos_api::registry::validate(&o) {
            return Err(MapError::Invalid {
                kind: o.kind.clone(),
                name: o.metadata.name.clone(),
                message: e.to_string(),
            });
        }
    }
    let mut names = BTreeSet::new();
    for o in out.all() {
        if !names.insert((o.kind.clone(), o.metadata.name.clone())) {
            return Err(MapError::Invalid {
                kind: o.kind,
                name: o.metadata.name,
                message: "two entries map to this name".into(),
            });
        }
    }
    Ok(out)
}
