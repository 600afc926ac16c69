//! The blob of a component Item, as both OS runtimes need it: the Item of that id and version
//! Ready, its one Layer of an accepted media type, and the verified blob the Layer keeps.

use std::path::PathBuf;
use std::sync::Arc;

use aos_api::{ItemPhase, ItemRef, ItemSpec, LayerSpec, Object};
use aos_store::{Api, Backend, StoreError};

/// The names of the slot resources whose `components` name the Item `item_id`: the ones a
/// change of that Item wakes (an Item turns Ready only once its Layers are, so the Items a slot
/// names are all it waits on).
pub fn slots_naming<S: aos_api::Spec>(
    slots: &[Arc<Object<S>>],
    item_id: &str,
    components: fn(&S) -> Vec<&ItemRef>,
) -> Vec<String> {
    slots
        .iter()
        .filter(|s| components(&s.spec).iter().any(|r| r.item_id == item_id))
        .map(|s| s.name().to_string())
        .collect()
}

/// Whether a node whose own slot object is `own` (named after it; `None`: any) reconciles the
/// slot object `name`: in a unit, every node's is in the one store.
pub fn is_own_slot(own: Option<&str>, name: &str) -> bool {
    own.is_none_or(|n| n == name)
}

/// The blob of a wanted component, or why there is none yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blob {
    /// The verified blob on disk, its digest and media type.
    Ready {
        /// Where it is.
        path: PathBuf,
        /// `sha256:…`.
        digest: String,
        /// Its media type (one of those accepted).
        media_type: String,
    },
    /// The Item is not Ready yet (or missing): the message says which.
    Waiting(String),
    /// The Item is not a component of this runtime: nothing can be installed.
    Invalid(String),
}

/// A component a slot resource asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// Its version.
    pub version: String,
    /// Its blob.
    pub blob: Blob,
}

/// The component `r` as wanted: its version and blob.
pub async fn wanted(
    backend: &Arc<dyn Backend>,
    r: &ItemRef,
    accepted: &[&str],
    unit_node: Option<&str>,
) -> Result<Wanted, StoreError> {
    Ok(Wanted {
        version: r.version.clone(),
        blob: blob(backend, r, accepted, unit_node).await?,
    })
}

/// The blob of the component `r`, if its media type is one of `accepted`; in a unit
/// (`unit_node`), this node's copy.
pub async fn blob(
    backend: &Arc<dyn Backend>,
    r: &ItemRef,
    accepted: &[&str],
    unit_node: Option<&str>,
) -> Result<Blob, StoreError> {
    let (items, _) = Api::<ItemSpec>::new(backend.clone())
        .list(&Default::default())
        .await?;
    let Some(item) = items.into_iter().find(|i| {
        i.spec.item_id == r.item_id
            && i.spec.version == r.version
            && i.metadata.deletion_timestamp.is_none()
    }) else {
        return Ok(Blob::Waiting(format!(
            "no Item {} version {}",
            r.item_id, r.version
        )));
    };
    if item.status.phase_on(unit_node) != ItemPhase::Ready {
        return Ok(Blob::Waiting(format!(
            "waiting for Item {} version {} to be Ready",
            r.item_id, r.version
        )));
    }
    // This node's platform's image (in a unit of mixed platforms each has its own).
    let layers = item
        .status
        .resolution(&aos_api::native_platform())
        .unwrap_or_default()
        .layers;
    let [layer] = layers.as_slice() else {
        return Ok(Blob::Invalid(format!(
            "Item {} version {} has {} images, a component has one",
            r.item_id,
            r.version,
            layers.len()
        )));
    };
    let layer = &aos_api::layer_object_name(layer, unit_node);
    let Some(l) = Api::<LayerSpec>::new(backend.clone())
        .get_opt(layer)
        .await?
    else {
        return Ok(Blob::Waiting(format!("waiting for Layer {layer}")));
    };
    if !accepted.contains(&l.spec.media_type.as_str()) {
        return Ok(Blob::Invalid(format!(
            "{} is not a component of this runtime (media type {}; expected {})",
            r.item_id,
            l.spec.media_type,
            accepted.join(" or ")
        )));
    }
    Ok(match l.status.path {
        Some(p) => Blob::Ready {
            path: p.into(),
            digest: l.spec.digest,
            media_type: l.spec.media_type,
        },
        None => Blob::Waiting(format!("waiting for Layer {layer}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aos_api::BootSlotSpec;

    fn item(id: &str) -> Option<ItemRef> {
        Some(ItemRef {
            item_id: id.into(),
            version: "1".into(),
        })
    }

    #[test]
    fn an_item_wakes_the_slots_that_name_it_as_their_component_or_their_recovery() {
        let slots = vec![
            Arc::new(Object::new(
                "main",
                BootSlotSpec {
                    item: item("boot"),
                    recovery: None,
                },
            )),
            Arc::new(Object::new(
                "rescue",
                BootSlotSpec {
                    item: None,
                    recovery: item("boot"),
                },
            )),
            Arc::new(Object::new("idle", BootSlotSpec::default())),
        ];
        assert_eq!(
            slots_naming(&slots, "boot", BootSlotSpec::components),
            ["main", "rescue"]
        );
        assert!(slots_naming(&slots, "rootfs", BootSlotSpec::components).is_empty());
    }
}
