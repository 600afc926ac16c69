//! The image pipeline's controllers as wholes: the Item controller (woken by the Layers an
//! Item owns) and the Layer controller (woken by the deletion of an Item owning Layers).

use std::sync::Arc;

use aos_api::{InstanceSpec, ItemSpec, LayerSpec, Object};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::Backend;

use crate::{ImageEnv, ItemReconciler, LayerReconciler};

/// The Item controller, watching the Layers Items own as well as Items (and, in a unit,
/// where Instances are placed).
pub fn item_controller(
    env: Arc<ImageEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<ItemReconciler> {
    let unit = env.node.is_some();
    let controller = Controller::new(ItemReconciler::new(env), backend, config)
        .watches::<LayerSpec>(owning_items);
    if !unit {
        return controller;
    }
    // In a unit, where an Instance is placed decides which nodes fetch its Item.
    let items = controller.reader();
    controller.watches::<InstanceSpec>(crate::unit::instance_waker(items))
}

/// The Layer controller, woken by the deletion of an Item that owns Layers.
pub fn layer_controller(
    env: Arc<ImageEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<LayerReconciler> {
    let controller = Controller::new(LayerReconciler::new(env), backend, config);
    let layers = controller.reader();
    controller.watches::<ItemSpec>(move |item: &Object<ItemSpec>| {
        if item.metadata.deletion_timestamp.is_none() {
            return Vec::new();
        }
        layers
            .list()
            .iter()
            .filter(|l| owning_items(l).contains(&item.metadata.name))
            .map(|l| l.name().to_string())
            .collect()
    })
}

/// The Items that own a Layer.
fn owning_items(l: &Object<LayerSpec>) -> Vec<String> {
    l.metadata
        .owner_references
        .iter()
        .filter(|o| o.kind == "Item")
        .map(|o| o.name.clone())
        .collect()
}
