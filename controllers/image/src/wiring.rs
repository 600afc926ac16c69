//! The image pipeline's controllers as wholes: the Item controller (woken by the Layers an
//! Item owns) and the Layer controller.

use std::sync::Arc;

use aos_api::{LayerSpec, Object};
use aos_reconcile::{Controller, ControllerConfig};
use aos_store::Backend;

use crate::{ImageEnv, ItemReconciler, LayerReconciler};

/// The Item controller, watching the Layers Items own as well as Items.
pub fn item_controller(
    env: Arc<ImageEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<ItemReconciler> {
    Controller::new(ItemReconciler::new(env), backend, config).watches::<LayerSpec>(owning_items)
}

/// The Layer controller.
pub fn layer_controller(
    env: Arc<ImageEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
) -> Controller<LayerReconciler> {
    Controller::new(LayerReconciler::new(env), backend, config)
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
