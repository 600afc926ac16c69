//! Wiring of the image pipeline: the layer store under `<data>/images`, the Item and Layer
//! controllers, and the periodic collection of orphan files.

use std::sync::Arc;

use anyhow::Context as _;
use aos_image::convert::ConvertOptions;
use aos_image::download::RetryPolicy;
use aos_image::layerstore::LayerStore;
use aos_image::source::SourceConfig;
use aos_image::space::SpaceAllocator;
use aos_image::tarfilter::FilterOptions;
use aos_image_controllers::ImageEnv;
use aos_reconcile::ControllerConfig;
use aos_store::Backend;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

pub fn env(c: &Config) -> anyhow::Result<Arc<ImageEnv>> {
    let i = &c.images;
    let root = c.data_dir.join("images");
    let store = LayerStore::open(&root)
        .with_context(|| format!("failed to open the layer store {}", root.display()))?;
    Ok(Arc::new(ImageEnv {
        store,
        sources: Arc::new(SourceConfig {
            insecure_registries: i.insecure_registries.clone(),
            credentials: i.credentials.clone(),
            ca_files: i.ca_files.clone(),
            connect_timeout: i.connect_timeout.0,
            read_timeout: i.read_timeout.0,
        }),
        retry: RetryPolicy {
            attempts: i.download_attempts,
            first_wait: i.retry_wait.0,
            max_wait: i.retry_max_wait.0,
        },
        convert: ConvertOptions {
            tar2sqfs: i.tar2sqfs.clone(),
            compressor: i.compressor.clone(),
            compressor_options: Some(i.compressor_options.clone()).filter(|o| !o.is_empty()),
            jobs: 0,
            filter: FilterOptions {
                allow_devices: i.allow_devices,
            },
            follow: i.convert_while_downloading,
        },
        space: SpaceAllocator::new(&root, i.keep_free_mib << 20),
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH.into(),
        removed_ttl: i.removed_ttl.0,
        versions_per_item: i.versions_per_item,
        integrity_interval: i.integrity_interval.0,
        archive_dirs: i.archive_dirs.clone(),
        node: c.node.in_unit().then(|| {
            aos_node_controller::host::object_name(&aos_node_controller::host::node_id(Some(
                &c.node.id,
            )))
        }),
    }))
}

/// Starts the Item and Layer controllers and the orphan-file collector.
pub fn spawn(
    tasks: &mut JoinSet<()>,
    env: Arc<ImageEnv>,
    backend: Arc<dyn Backend>,
    config: ControllerConfig,
    gc_interval: std::time::Duration,
    shutdown: &CancellationToken,
) {
    let items =
        aos_image_controllers::item_controller(env.clone(), backend.clone(), config.clone());
    tasks.spawn(items.run(shutdown.clone()));
    let layers = aos_image_controllers::layer_controller(env.clone(), backend.clone(), config);
    tasks.spawn(layers.run(shutdown.clone()));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        loop {
            // Files of a record the store lost would look orphaned: collect only on an intact store.
            if !backend.health().damaged.is_empty() {
                tracing::warn!("the store has damaged records: orphan files are not collected");
            } else if let Err(e) = aos_image_controllers::collect_orphan_files(
                &env.store,
                backend.clone(),
                env.node.as_deref(),
            )
            .await
            {
                tracing::warn!(error = %e, "orphan file collection failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(gc_interval) => {}
            }
        }
    });
}
