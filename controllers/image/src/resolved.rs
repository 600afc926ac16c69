//! What the Item controller keeps of a resolution: the run config it writes into the status,
//! and the manifest and diff ids it reads back from this node's disk for its platform.

use aos_api::ItemStatus;
use aos_image::oci::{self, Manifest, Root};
use aos_image::pipeline::Resolved;

use crate::{ImageEnv, PipelineError};

/// What instances run with: the image config's process fields and the item config.
pub(crate) fn run_config(r: &Resolved) -> Result<aos_api::itemconfig::RunConfig, PipelineError> {
    let run = r.config.config.clone().unwrap_or_default();
    let item = r
        .item_config
        .as_ref()
        .map(aos_api::ItemConfig::parse)
        .transpose()
        .map_err(|e| PipelineError::InvalidConfig(e.to_string()))?;
    Ok(aos_api::itemconfig::RunConfig {
        image: aos_api::itemconfig::ImageRun {
            os: r.config.os.clone(),
            architecture: r.config.architecture.clone(),
            entrypoint: run.entrypoint,
            cmd: run.cmd,
            env: run.env,
            working_dir: run.working_dir,
        },
        item,
    })
}

/// Reads the manifest and diff ids kept for what this node's platform runs of an item.
pub(crate) fn kept(env: &ImageEnv, status: &ItemStatus) -> Option<(Manifest, Vec<String>)> {
    let status = status.resolution(&env.platform())?;
    let m = env.store.meta(status.manifest_digest.as_deref()?)?;
    let Root::Manifest(manifest) = oci::parse_root(&m).ok()? else {
        return None;
    };
    let c = env.store.meta(status.config_digest.as_deref()?)?;
    let config = oci::ImageConfig::parse(&c).ok()?;
    Some((*manifest, config.diff_ids().to_vec()))
}
