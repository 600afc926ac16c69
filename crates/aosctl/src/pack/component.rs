//! `aosctl pack --boot IMAGE`: a partition image becomes a boot component, an OCI image archive
//! whose one layer is the image gzipped (`application/vnd.aos.image.component.full.v1+gzip`),
//! which an Item of `type: component` installs and a BootSlot writes to the inactive slot. The
//! image is streamed (a partition can be larger than memory) and packed reproducibly.

use std::io::Write;
use std::path::Path;

use aos_image::oci::media;
use aos_image::oci::sha256_digest as digest;

use super::{write_archive_with, PackError};

/// What a component pack produced.
#[derive(Clone, Debug)]
pub struct PackedComponent {
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The component blob's digest.
    pub layer_digest: String,
    /// Bytes of the component blob.
    pub layer_size: u64,
}

/// Gzips `image` into `gz` (deterministic: no name, no time).
fn gzip_file(image: &Path, gz: &Path) -> Result<(), PackError> {
    let rerr = |source| PackError::Read {
        path: image.display().to_string(),
        source,
    };
    let werr = |source| PackError::Write {
        path: gz.display().to_string(),
        source,
    };
    let mut input = std::fs::File::open(image).map_err(rerr)?;
    let out = std::fs::File::create(gz).map_err(werr)?;
    let mut enc =
        flate2::write::GzEncoder::new(std::io::BufWriter::new(out), flate2::Compression::default());
    std::io::copy(&mut input, &mut enc).map_err(werr)?;
    enc.finish().map_err(werr)?.flush().map_err(werr)?;
    Ok(())
}

/// Writes the OCI archive `out` whose one layer is the file `blob` of `media_type`.
pub(super) fn archive_component(
    blob: &Path,
    media_type: &str,
    out: &Path,
    os: &str,
    arch: &str,
) -> Result<PackedComponent, PackError> {
    let (layer_digest, layer_size) = aos_image::convert::file_digest(blob)?;
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": arch,
        "os": os,
        "rootfs": {"type": "layers", "diff_ids": []},
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": media_type, "digest": layer_digest, "size": layer_size}],
    }))
    .unwrap_or_default();
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_INDEX,
        "manifests": [{
            "mediaType": media::OCI_MANIFEST,
            "digest": digest(&manifest),
            "size": manifest.len(),
            "platform": {"os": os, "architecture": arch},
        }],
    }))
    .unwrap_or_default();
    let small = |b: &[u8]| (format!("blobs/sha256/{}", &digest(b)[7..]), b.to_vec());
    let mut files = vec![
        ("index.json".to_string(), index),
        (
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
        ("manifest.json".to_string(), manifest.clone()),
        small(&config),
        small(&manifest),
    ];
    files.sort();
    let name = format!("blobs/sha256/{}", &layer_digest[7..]);
    write_archive_with(out, &files, &[(name, blob)])?;
    Ok(PackedComponent {
        manifest_digest: digest(&manifest),
        layer_digest,
        layer_size,
    })
}

/// Packs the partition image `image` as a boot component for `os/arch` into `out`.
pub fn pack_boot(
    image: &Path,
    out: &Path,
    os: &str,
    arch: &str,
) -> Result<PackedComponent, PackError> {
    let gz = out.with_extension("component.gz.tmp");
    let result = gzip_file(image, &gz)
        .and_then(|_| archive_component(&gz, media::COMPONENT_FULL_GZIP, out, os, arch));
    let _ = std::fs::remove_file(&gz);
    result
}
