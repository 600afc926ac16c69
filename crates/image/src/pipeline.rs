//! The steps the controllers run, end to end: resolve an image (index → the node's manifest →
//! config and item config), install a service layer (download, verify, convert, check the diff
//! id, publish, drop the compressed blob), and install a component blob (download, verify, keep).

use std::path::PathBuf;

use crate::convert::{self, ConvertOptions};
use crate::download::{fetch_blob, RetryPolicy};
use crate::follow::Follow;
use crate::layerstore::{LayerRecord, LayerStore};
use crate::oci::{self, ImageConfig, Manifest, Root};
use crate::source::BlobSource;
use crate::ImageError;
use tracing::Instrument;

/// Limits for the small JSON documents of an image.
const MAX_CONFIG: u64 = 4 << 20;

/// Everything known about an image before its layers are fetched.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub item_config: Option<serde_json::Value>,
    /// The verified documents, as fetched.
    pub manifest_bytes: bytes::Bytes,
    pub config_bytes: bytes::Bytes,
    pub item_config_bytes: Option<bytes::Bytes>,
    /// The platform (`os/arch`, OCI names) the manifest was chosen for.
    pub platform: String,
    /// The platforms the index lists (`os/arch`); empty for a single manifest.
    pub offered: Vec<String>,
}

/// `os/arch` of an index entry's platform.
fn entry_platform(e: &oci::Descriptor) -> Option<String> {
    e.platform
        .as_ref()
        .map(|p| format!("{}/{}", p.os, p.architecture))
}

/// Follows the source's root to the manifest of `os/arch` and reads its configs.
/// `expected`, when given, is the digest the root (index or manifest) must have.
pub async fn resolve(
    source: &dyn BlobSource,
    os: &str,
    arch: &str,
    expected: Option<&str>,
) -> Result<Resolved, ImageError> {
    resolve_with(source, os, arch, expected, false).await
}

/// As `resolve`; with `or_first`, an index without `os/arch` gives its first platform's
/// manifest (for a node of a unit that only reads what the item asks for, to place it on
/// others).
pub async fn resolve_with(
    source: &dyn BlobSource,
    os: &str,
    arch: &str,
    expected: Option<&str>,
    or_first: bool,
) -> Result<Resolved, ImageError> {
    let mut platform = aos_api::platform_key(os, arch);
    let mut offered = Vec::new();
    let root = source.root().await?;
    let root_digest = oci::sha256_digest(&root);
    if let Some(want) = expected {
        if want != root_digest {
            return Err(ImageError::DigestMismatch {
                what: format!("the image at {}", source.name()),
                expected: want.to_string(),
                actual: root_digest,
            });
        }
    }
    let (manifest_digest, manifest, manifest_bytes) = match oci::parse_root(&root)? {
        Root::Manifest(m) => (root_digest, *m, root.clone()),
        Root::Index(entries) => {
            // A layout's index may point at a nested index (multi-platform image).
            offered = entries.iter().filter_map(entry_platform).collect();
            let mut chosen = match oci::select_platform(&entries, os, arch) {
                Err(ImageError::NoPlatform(_)) if or_first && !offered.is_empty() => {
                    let first = entries.iter().find(|e| e.platform.is_some());
                    first
                        .cloned()
                        .ok_or_else(|| ImageError::NoPlatform(platform.clone()))?
                }
                other => other?,
            };
            if let Some(p) = entry_platform(&chosen) {
                platform = p;
            }
            let (os, arch) = platform.split_once('/').unwrap_or((os, arch));
            let mut depth = 0;
            loop {
                let bytes = source.manifest(&chosen.digest).await?;
                match oci::parse_root(&bytes)? {
                    Root::Manifest(m) => break (chosen.digest.clone(), *m, bytes.clone()),
                    Root::Index(inner) if depth < 2 => {
                        chosen = oci::select_platform(&inner, os, arch)?;
                        depth += 1;
                    }
                    Root::Index(_) => {
                        return Err(ImageError::InvalidManifest(
                            "indexes nested too deep".into(),
                        ))
                    }
                }
            }
        }
    };
    let config_bytes = source
        .small_blob(&manifest.config.digest, MAX_CONFIG)
        .await?;
    let config = ImageConfig::parse(&config_bytes)?;
    let (item_config, item_config_bytes) = match &manifest.item_config {
        Some(d) => {
            let b = source.small_blob(&d.digest, MAX_CONFIG).await?;
            let v = serde_json::from_slice(&b)
                .map_err(|e| ImageError::InvalidManifest(format!("item config: {e}")))?;
            (Some(v), Some(b))
        }
        None => (None, None),
    };
    let service_layers = manifest
        .layers
        .iter()
        .filter(|l| !oci::is_component(&l.media_type))
        .count();
    if service_layers > 0 && config.diff_ids().len() != manifest.layers.len() {
        return Err(ImageError::InvalidManifest(format!(
            "{} layers but {} diff ids in the config",
            manifest.layers.len(),
            config.diff_ids().len()
        )));
    }
    Ok(Resolved {
        manifest_digest,
        manifest,
        config,
        item_config,
        manifest_bytes,
        config_bytes,
        item_config_bytes,
        platform,
        offered,
    })
}

/// A layer to install.
#[derive(Clone, Debug)]
pub struct LayerWanted {
    pub digest: String,
    pub diff_id: String,
    pub media_type: String,
    pub size: u64,
}

impl Resolved {
    /// Every layer of the manifest with its diff id from the config, bottom first.
    pub fn layers_wanted(&self) -> Vec<LayerWanted> {
        self.manifest
            .layers
            .iter()
            .zip(self.config.diff_ids())
            .map(|(l, d)| LayerWanted {
                digest: l.digest.clone(),
                diff_id: d.clone(),
                media_type: l.media_type.clone(),
                size: l.size,
            })
            .collect()
    }
}

/// How long each phase of installing one layer took: the download (hashed as it streams),
/// the conversion to squashfs (gunzip, tar checks, the image writer) and the hash of the image.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerTimings {
    pub download: std::time::Duration,
    pub unpack: std::time::Duration,
    pub verify: std::time::Duration,
    /// The conversion that counted followed the download (else it ran again on the verified
    /// blob, after the download).
    pub followed: bool,
}

/// Installs a service layer into the store (or finds it there) and returns its record, and
/// the time of each phase when it had to be installed.
pub async fn install_service_layer(
    store: &LayerStore,
    source: &dyn BlobSource,
    layer: &LayerWanted,
    retry: &RetryPolicy,
    convert_opts: &ConvertOptions,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(LayerRecord, Option<LayerTimings>), ImageError> {
    if let Some(rec) = store.record(&layer.diff_id) {
        progress(layer.size);
        return Ok((rec, None));
    }
    let compression = oci::layer_compression(&layer.media_type)?;
    let started = std::time::Instant::now();
    let tmp = store.tmp_path(layer.diff_id.trim_start_matches("sha256:"));
    let _ = std::fs::remove_file(&tmp);

    // The conversion follows the download (see [`crate::follow`]).
    let follow = Follow::new();
    let reader = follow.reader(
        store.partial_path(&layer.digest)?,
        store.blob_path(&layer.digest)?,
        layer.size,
    );
    let (tmp2, opts, digest) = (tmp.clone(), convert_opts.clone(), layer.digest.clone());
    let span = tracing::info_span!("convert", digest = %layer.digest);
    let streaming = convert_opts.follow.then(|| {
        tokio::task::spawn_blocking(move || {
            span.in_scope(|| convert::to_squashfs_from(reader, &digest, compression, &tmp2, &opts))
        })
    });
    let both = |have: u64| {
        progress(have);
        follow.progress(have);
    };
    let fetched = fetch_blob(
        source,
        &layer.digest,
        layer.size,
        store,
        retry,
        false,
        &both,
    )
    .instrument(tracing::info_span!("download", digest = %layer.digest, size = layer.size))
    .await;
    follow.finish(fetched.is_ok());
    let downloaded = started.elapsed();
    // The converter stops with the download's failure; its output is gone then.
    let streamed = match streaming {
        Some(task) => Some(task.await),
        None => None,
    };
    if fetched.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let blob = fetched?;

    let mut followed = false;
    let converted = match streamed {
        Some(Ok(Ok(c))) if c.diff_id == layer.diff_id => {
            followed = true;
            c
        }
        other => {
            // Whatever went wrong while following, the verified blob decides.
            let why = match other {
                None => None,
                Some(Ok(Ok(c))) => Some(format!("diff id {}", c.diff_id)),
                Some(Ok(Err(e))) => Some(e.to_string()),
                Some(Err(e)) => Some(e.to_string()),
            };
            if let Some(why) = why {
                tracing::info!(
                    digest = layer.digest,
                    why,
                    "converting the verified blob again"
                );
            }
            let _ = std::fs::remove_file(&tmp);
            convert_blob(store, layer, &blob, compression, &tmp, convert_opts).await?
        }
    };
    let unpacked = started.elapsed() - downloaded;
    let tmp3 = tmp.clone();
    let (at_rest_digest, image_size) =
        tokio::task::spawn_blocking(move || convert::file_digest(&tmp3))
            .await
            .map_err(|e| ImageError::io("the hashing task failed", std::io::Error::other(e)))??;
    let record = LayerRecord {
        digest: layer.digest.clone(),
        diff_id: layer.diff_id.clone(),
        media_type: layer.media_type.clone(),
        size: layer.size,
        unpacked_size: converted.tar_size,
        image_size,
        at_rest_digest,
        files: converted.stats.files,
        implicit_dirs: converted.stats.implicit_dirs,
        index: converted.stats.index,
    };
    store.publish(&tmp, &record)?;
    store.remove_blob(&layer.digest)?;
    tracing::info!(
        digest = layer.digest,
        size = layer.size,
        unpacked = record.unpacked_size,
        image = record.image_size,
        files = record.files,
        download_ms = downloaded.as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        followed,
        "layer installed"
    );
    let timings = LayerTimings {
        download: downloaded,
        unpack: unpacked,
        verify: started.elapsed() - downloaded - unpacked,
        followed,
    };
    Ok((record, Some(timings)))
}

/// Converts a downloaded, verified blob into `tmp` and checks the diff id; a hostile or
/// mismatching blob is removed from the store.
async fn convert_blob(
    store: &LayerStore,
    layer: &LayerWanted,
    blob: &std::path::Path,
    compression: oci::Compression,
    tmp: &std::path::Path,
    convert_opts: &ConvertOptions,
) -> Result<convert::Converted, ImageError> {
    let (blob2, tmp2, opts) = (blob.to_path_buf(), tmp.to_path_buf(), convert_opts.clone());
    let span = tracing::info_span!("convert", digest = %layer.digest);
    let converted = tokio::task::spawn_blocking(move || {
        span.in_scope(|| convert::to_squashfs(&blob2, compression, &tmp2, &opts))
    })
    .await
    .map_err(|e| ImageError::Convert {
        digest: layer.digest.clone(),
        message: format!("the conversion task failed: {e}"),
    })?;
    let converted = match converted {
        Ok(c) => c,
        Err(e) => {
            if matches!(e, ImageError::HostileLayer(_)) {
                // The blob is authentic but unusable: do not keep it around.
                let _ = store.remove_blob(&layer.digest);
            }
            return Err(e);
        }
    };
    if converted.diff_id != layer.diff_id {
        let _ = std::fs::remove_file(tmp);
        let _ = store.remove_blob(&layer.digest);
        return Err(ImageError::DigestMismatch {
            what: format!("the uncompressed tar of {}", layer.digest),
            expected: layer.diff_id.clone(),
            actual: converted.diff_id,
        });
    }
    Ok(converted)
}

/// Installs a component blob (kept as it came, verified) and returns its path.
pub async fn install_component(
    store: &LayerStore,
    source: &dyn BlobSource,
    layer: &LayerWanted,
    retry: &RetryPolicy,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<PathBuf, ImageError> {
    fetch_blob(
        source,
        &layer.digest,
        layer.size,
        store,
        retry,
        true,
        progress,
    )
    .instrument(tracing::info_span!("download", digest = %layer.digest, size = layer.size))
    .await
}
