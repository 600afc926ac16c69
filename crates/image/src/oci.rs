//! Reading OCI (and Docker v2) manifests, indexes and image configs, finding the item config
//! descriptor, choosing the node's platform from an index, and checking digests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ImageError;

/// Media types the pipeline knows.
pub mod media {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const ITEM_CONFIG: &str = "application/vnd.aos.item.config.v1+json";
    pub const COMPONENT_FULL_GZIP: &str = "application/vnd.aos.image.component.full.v1+gzip";
    pub const COMPONENT_FULL_SQUASHFS: &str =
        "application/vnd.aos.image.component.full.v1+squashfs";
    pub const COMPONENT_INC_SQUASHFS: &str = "application/vnd.aos.image.component.inc.v1+squashfs";

    /// What a registry is asked to return for a reference.
    pub const ACCEPTED_ROOTS: &[&str] = &[OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];
}

/// How a service layer's tar is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a service layer, or why its media type is not one.
pub fn layer_compression(media_type: &str) -> Result<Compression, ImageError> {
    Ok(match media_type {
        media::LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => Compression::None,
        media::LAYER_GZIP | media::DOCKER_LAYER_GZIP => Compression::Gzip,
        media::LAYER_ZSTD => Compression::Zstd,
        other => return Err(ImageError::UnsupportedMediaType(other.to_string())),
    })
}

/// Whether a media type is a boot or rootfs component image (kept as a verified blob).
pub fn is_component(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.aos.image.component.")
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image manifest: config, layers (lowest first), and the item config if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    pub media_type: String,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub item_config: Option<Descriptor>,
}

/// What a reference or a layout's entry point leads to.
#[derive(Clone, Debug)]
pub enum Root {
    Index(Vec<Descriptor>),
    Manifest(Box<Manifest>),
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::InvalidManifest(msg.into())
}

/// Parses a manifest or an index.
pub fn parse_root(bytes: &[u8]) -> Result<Root, ImageError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
    let media_type = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_string();
    if v.get("manifests").is_some()
        || media_type == media::OCI_INDEX
        || media_type == media::DOCKER_LIST
    {
        let entries: Vec<Descriptor> = serde_json::from_value(v["manifests"].clone())
            .map_err(|e| bad(format!("index entries: {e}")))?;
        return Ok(Root::Index(entries));
    }
    if !media_type.is_empty()
        && media_type != media::OCI_MANIFEST
        && media_type != media::DOCKER_MANIFEST
    {
        return Err(ImageError::UnsupportedMediaType(media_type));
    }
    let desc = |key: &str| -> Result<Descriptor, ImageError> {
        serde_json::from_value(
            v.get(key)
                .cloned()
                .ok_or_else(|| bad(format!("no {key}")))?,
        )
        .map_err(|e| bad(format!("{key}: {e}")))
    };
    let config = desc("config")?;
    let mut layers: Vec<Descriptor> =
        serde_json::from_value(v.get("layers").cloned().unwrap_or_default())
            .map_err(|e| bad(format!("layers: {e}")))?;
    // The item config travels beside config and layers, under any key, or among the layers.
    let mut item_config = v
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !matches!(k.as_str(), "config" | "layers" | "subject"))
        .filter_map(|(_, d)| serde_json::from_value::<Descriptor>(d.clone()).ok())
        .find(|d| d.media_type == media::ITEM_CONFIG);
    if let Some(i) = layers
        .iter()
        .position(|l| l.media_type == media::ITEM_CONFIG)
    {
        item_config = item_config.or(Some(layers.remove(i)));
    }
    for d in std::iter::once(&config).chain(&layers).chain(&item_config) {
        if crate::digest_hex(&d.digest).is_none() {
            return Err(bad(format!("{:?} is not a sha256 digest", d.digest)));
        }
    }
    Ok(Root::Manifest(Box::new(Manifest {
        media_type,
        config,
        layers,
        item_config,
    })))
}

/// The index entry for `os/arch`.
pub fn select_platform(
    entries: &[Descriptor],
    os: &str,
    arch: &str,
) -> Result<Descriptor, ImageError> {
    let arch = aos_api::oci_arch(arch);
    entries
        .iter()
        .find(|e| {
            e.platform
                .as_ref()
                .is_some_and(|p| p.os == os && p.architecture == arch)
        })
        .or_else(|| (entries.len() == 1 && entries[0].platform.is_none()).then(|| &entries[0]))
        .cloned()
        .ok_or_else(|| ImageError::NoPlatform(format!("{os}/{arch}")))
}

/// The parts of an image config aosd uses.
#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
}

#[derive(Deserialize, Clone, Debug, Default, PartialEq)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| bad(format!("image config: {e}")))
    }

    pub fn diff_ids(&self) -> &[String] {
        self.rootfs.as_ref().map_or(&[], |r| &r.diff_ids)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Checks that `bytes` have `digest`.
pub fn verify(what: &str, bytes: &[u8], digest: &str) -> Result<(), ImageError> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: what.to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(media: &str, n: u8) -> serde_json::Value {
        serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", hex::encode([n; 32])), "size": 10})
    }

    #[test]
    fn a_manifest_gives_config_layers_and_the_item_config_beside_them() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": d(media::OCI_CONFIG, 1),
            "layers": [d(media::LAYER_GZIP, 2), d(media::LAYER_GZIP, 3)],
            "aosService": d(media::ITEM_CONFIG, 4),
        });
        let Root::Manifest(m) = parse_root(&serde_json::to_vec(&m).unwrap()).unwrap() else {
            panic!()
        };
        assert_eq!(m.layers.len(), 2);
        assert_eq!(m.item_config.unwrap().media_type, media::ITEM_CONFIG);
    }

    #[test]
    fn an_item_config_among_the_layers_is_taken_out_of_them() {
        let m = serde_json::json!({
            "config": d(media::OCI_CONFIG, 1),
            "layers": [d(media::LAYER_GZIP, 2), d(media::ITEM_CONFIG, 4)],
        });
        let Root::Manifest(m) = parse_root(&serde_json::to_vec(&m).unwrap()).unwrap() else {
            panic!()
        };
        assert_eq!(m.layers.len(), 1);
        assert!(m.item_config.is_some());
    }

    #[test]
    fn garbage_and_unknown_media_types_are_refused() {
        assert!(matches!(
            parse_root(b"{nope"),
            Err(ImageError::InvalidManifest(_))
        ));
        let m = serde_json::json!({"mediaType": "application/x-foo", "config": d(media::OCI_CONFIG, 1)});
        assert!(matches!(
            parse_root(&serde_json::to_vec(&m).unwrap()),
            Err(ImageError::UnsupportedMediaType(_))
        ));
        let m = serde_json::json!({"config": {"mediaType": media::OCI_CONFIG, "digest": "md5:x", "size": 1}});
        assert!(parse_root(&serde_json::to_vec(&m).unwrap()).is_err());
        assert!(layer_compression("application/x-rar").is_err());
    }

    #[test]
    fn the_platform_of_the_node_is_chosen_from_an_index() {
        let mut a = serde_json::from_value::<Descriptor>(d(media::OCI_MANIFEST, 1)).unwrap();
        a.platform = Some(Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: None,
        });
        let mut b = a.clone();
        b.digest = format!("sha256:{}", hex::encode([2u8; 32]));
        b.platform = Some(Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        });
        assert_eq!(
            select_platform(&[a.clone(), b.clone()], "linux", "x86_64").unwrap(),
            b
        );
        assert_eq!(
            select_platform(&[a.clone(), b], "linux", "aarch64").unwrap(),
            a
        );
        assert!(matches!(
            select_platform(&[a], "linux", "x86_64"),
            Err(ImageError::NoPlatform(_))
        ));
    }

    #[test]
    fn digests_are_checked() {
        assert!(verify("x", b"abc", &sha256_digest(b"abc")).is_ok());
        assert!(matches!(
            verify("x", b"abd", &sha256_digest(b"abc")),
            Err(ImageError::DigestMismatch { .. })
        ));
    }
}
