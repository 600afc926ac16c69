//! `aosctl push`: an archive made by `aosctl pack` (or any OCI layout) goes to a registry with
//! every blob it references, the item config included (which generic copy tools skip).

use std::path::Path;

/// Pushes an archive (or layout) to a registry reference; returns the digest now tagged there.
/// With one manifest in the index, that manifest is tagged; with several, the index is.
pub async fn push(
    archive: &Path,
    reference: &str,
    insecure: &[String],
) -> Result<String, aos_image::ImageError> {
    use aos_image::oci::{self, Root};
    use aos_image::source::{BlobSource, FileSource, RegistrySource, SourceConfig};
    let src = FileSource::open(archive)?;
    let root = src.root().await?;
    let mut manifests = Vec::new();
    match oci::parse_root(&root)? {
        Root::Manifest(_) => manifests.push((oci::sha256_digest(&root), root.clone())),
        Root::Index(entries) => {
            for e in entries {
                manifests.push((e.digest.clone(), src.manifest(&e.digest).await?));
            }
        }
    }
    let mut blobs: Vec<(String, bytes::Bytes)> = Vec::new();
    for (_, m) in &manifests {
        let Root::Manifest(m) = oci::parse_root(m)? else {
            return Err(aos_image::ImageError::InvalidManifest(
                "nested index".into(),
            ));
        };
        for d in std::iter::once(&m.config)
            .chain(&m.layers)
            .chain(&m.item_config)
        {
            if !blobs.iter().any(|(x, _)| x == &d.digest) {
                blobs.push((d.digest.clone(), src.small_blob(&d.digest, u64::MAX).await?));
            }
        }
    }
    let config = SourceConfig {
        insecure_registries: insecure.to_vec(),
        ..SourceConfig::default()
    };
    let registry = RegistrySource::new(reference, &config)?;
    let media = |b: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(b)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_string))
            .unwrap_or_else(|| oci::media::OCI_MANIFEST.to_string())
    };
    if manifests.len() == 1 {
        let (digest, body) = manifests.remove(0);
        let m = media(&body);
        registry.push(&blobs, &[], (body, m)).await?;
        return Ok(digest);
    }
    let by_digest: Vec<(String, bytes::Bytes, String)> = manifests
        .iter()
        .map(|(d, b)| (d.clone(), b.clone(), media(b)))
        .collect();
    let m = media(&root);
    registry.push(&blobs, &by_digest, (root.clone(), m)).await?;
    Ok(oci::sha256_digest(&root))
}
