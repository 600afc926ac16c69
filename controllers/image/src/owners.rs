//! Which Layers an Item owns: on this node, the ones it names, and letting them go (a Layer
//! left without owners is cached for the removed-item TTL).

use aos_api::{ItemSpec, LayerSpec, Object};
use aos_store::Api;

use crate::{PipelineError, REMOVED_AT, REMOVED_ITEM};

/// The Layers of node `node` that Item `item` owns.
pub fn owned_here(all: &[Object<LayerSpec>], item: &str, node: Option<&str>) -> Vec<String> {
    all.iter()
        .filter(|l| crate::kept_by(&l.spec, node))
        .filter(|l| {
            l.metadata
                .owner_references
                .iter()
                .any(|o| o.kind == "Item" && o.name == item)
        })
        .map(|l| l.name().to_string())
        .collect()
}

/// Removes the Item's ownership from these Layers; a Layer left without owners is marked as a
/// cached layer of the removed item (kept for the TTL). Its removal time is the Item's deletion
/// mark where it has one (the store sets them in the order the Items were deleted, also for
/// Items deleted in one batch), so retention drops versions in that order whatever order the
/// controller takes them in; else now.
pub async fn disown(
    layers: &Api<LayerSpec>,
    obj: &Object<ItemSpec>,
    names: impl Iterator<Item = String>,
) -> Result<(), PipelineError> {
    let tag = format!("{}:{}", obj.spec.item_id, obj.spec.version);
    let removed_at = obj.metadata.deletion_timestamp.unwrap_or_else(now);
    for lname in names {
        let Some(mut l) = layers.get_opt(&lname).await? else {
            continue;
        };
        let before = l.metadata.owner_references.len();
        l.metadata
            .owner_references
            .retain(|o| !(o.kind == "Item" && o.name == obj.metadata.name));
        if l.metadata.owner_references.len() == before {
            continue;
        }
        if l.metadata.owner_references.is_empty() {
            l.metadata
                .annotations
                .insert(REMOVED_ITEM.into(), tag.clone());
            l.metadata
                .annotations
                .insert(REMOVED_AT.into(), removed_at.to_rfc3339());
        }
        layers.apply(&l).await?;
    }
    Ok(())
}

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
