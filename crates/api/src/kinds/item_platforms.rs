//! An Item in a unit whose nodes differ in platform: the platforms its image offers, and the
//! image each platform runs (`status.platforms`, beside the top-level resolution of the first
//! node that resolved it). Platforms are named `os/arch` with OCI architecture names.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::itemconfig::RunConfig;
use crate::ItemStatus;

/// The OCI name of a CPU architecture as Rust (and `uname -m`) names it (`x86_64` → `amd64`).
pub fn oci_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" | "armv7l" => "arm",
        "x86" | "i686" | "i386" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `os/arch` with the OCI name of `arch`.
pub fn platform_key(os: &str, arch: &str) -> String {
    format!("{os}/{}", oci_arch(arch))
}

/// The platform of this machine, as `platform_key` names it.
pub fn native_platform() -> String {
    platform_key(std::env::consts::OS, std::env::consts::ARCH)
}

/// What one platform of an Item runs: the manifest chosen for it and what was read from it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Resolution {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_config_digest: Option<String>,
    /// Layer resource names, lowest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RunConfig>,
}

/// Per-platform resolutions, keyed by `os/arch`.
pub type Platforms = BTreeMap<String, Resolution>;

impl ItemStatus {
    /// The platform of the top-level resolution's image config (`None`: not resolved, or a
    /// config that does not say).
    pub fn image_platform(&self) -> Option<String> {
        let image = &self.config.as_ref()?.image;
        (!image.os.is_empty() && !image.architecture.is_empty())
            .then(|| platform_key(&image.os, &image.architecture))
    }

    /// What a node of `platform` runs: its platform's entry in `platforms`, else the top-level
    /// resolution when it was made for `platform` (or by a node that did not say, or not yet:
    /// then it is empty), else `None` (another platform's, not resolved for this one yet).
    pub fn resolution(&self, platform: &str) -> Option<Resolution> {
        if let Some(r) = self.platforms.get(platform) {
            return Some(r.clone());
        }
        self.resolved_for
            .as_deref()
            .is_none_or(|p| p == platform)
            .then(|| self.top_level())
    }

    /// The top-level resolution.
    pub fn top_level(&self) -> Resolution {
        Resolution {
            manifest_digest: self.manifest_digest.clone(),
            config_digest: self.config_digest.clone(),
            item_config_digest: self.item_config_digest.clone(),
            layers: self.layers.clone(),
            config: self.config.clone(),
        }
    }

    /// Records what a node of `platform` runs: as the top-level resolution when it is the
    /// first of `generation` (dropping every other platform's, and taking `offered`, the
    /// platforms the image's index lists) or the top-level one is for `platform`, else as
    /// `platform`'s entry. Returns whether it was the first of `generation`.
    pub fn set_resolution(
        &mut self,
        platform: &str,
        generation: i64,
        r: Resolution,
        offered: &[String],
    ) -> bool {
        let first = self.resolved_generation != generation || self.config.is_none();
        if first {
            self.platforms.clear();
            self.offered = offered.to_vec();
        }
        if first || self.resolved_for.as_deref().is_none_or(|p| p == platform) {
            self.manifest_digest = r.manifest_digest;
            self.config_digest = r.config_digest;
            self.item_config_digest = r.item_config_digest;
            self.layers = r.layers;
            self.config = r.config;
            self.resolved_generation = generation;
            self.resolved_for = Some(platform.to_string());
        } else {
            self.platforms.insert(platform.to_string(), r);
        }
        first
    }

    /// The platforms (`os/arch`) the Item runs on: those its image's index lists, else the
    /// one its single manifest's config names; empty when not known (not resolved yet, or a
    /// config that names no platform): then a node of any platform may try.
    pub fn platforms(&self) -> Vec<String> {
        if !self.offered.is_empty() {
            return self.offered.clone();
        }
        self.image_platform().into_iter().collect()
    }

    /// Whether a node of `platform` may run the Item (see `platforms`).
    pub fn offers(&self, platform: &str) -> bool {
        let platforms = self.platforms();
        platforms.is_empty() || platforms.iter().any(|p| p == platform)
    }

    /// Every manifest, config and item config digest any platform uses.
    pub fn digests(&self) -> Vec<String> {
        std::iter::once(self.top_level())
            .chain(self.platforms.values().cloned())
            .flat_map(|r| [r.manifest_digest, r.config_digest, r.item_config_digest])
            .flatten()
            .collect()
    }

    /// Every Layer resource name any platform uses.
    pub fn all_layers(&self) -> Vec<String> {
        let mut all: Vec<String> = self.layers.clone();
        for r in self.platforms.values() {
            all.extend(r.layers.iter().cloned());
        }
        all.sort();
        all.dedup();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::itemconfig::ImageRun;

    fn res(arch: &str, layer: &str) -> Resolution {
        Resolution {
            manifest_digest: Some(format!("m-{arch}")),
            layers: vec![layer.into()],
            config: Some(RunConfig {
                image: ImageRun {
                    os: "linux".into(),
                    architecture: arch.into(),
                    ..Default::default()
                },
                item: None,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_platform_finds_its_own_resolution_and_not_another_platforms() {
        let mut s = ItemStatus::default();
        assert_eq!(s.resolution("linux/amd64"), Some(Resolution::default()));
        s.set_resolution("linux/amd64", 1, res("amd64", "a"), &[]);
        assert_eq!(s.resolution("linux/amd64").unwrap().layers, ["a"]);
        assert_eq!(s.resolution("linux/arm64"), None);
        s.set_resolution("linux/arm64", 1, res("arm64", "b"), &[]);
        assert_eq!(s.resolution("linux/arm64").unwrap().layers, ["b"]);
        assert_eq!(s.resolution("linux/amd64").unwrap().layers, ["a"]);
        assert_eq!(s.all_layers(), ["a", "b"]);
        assert_eq!(s.digests(), ["m-amd64", "m-arm64"]);
        // The top-level platform again replaces it; a new generation starts over.
        s.set_resolution("linux/amd64", 1, res("amd64", "c"), &[]);
        assert_eq!(s.resolution("linux/amd64").unwrap().layers, ["c"]);
        assert_eq!(s.resolution("linux/arm64").unwrap().layers, ["b"]);
        s.set_resolution("linux/arm64", 2, res("arm64", "d"), &[]);
        assert_eq!(s.resolution("linux/arm64").unwrap().layers, ["d"]);
        assert_eq!(s.resolution("linux/amd64"), None);
        assert!(s.platforms.is_empty());
    }

    #[test]
    fn an_index_offers_its_platforms_and_a_single_manifest_its_own() {
        let mut s = ItemStatus::default();
        assert!(
            s.offers("linux/riscv64"),
            "not resolved yet: any platform may try"
        );
        s.set_resolution("linux/amd64", 1, res("amd64", "a"), &[]);
        assert!(s.offers("linux/amd64"));
        assert!(!s.offers("linux/arm64"));
        let index = ["linux/amd64".to_string(), "linux/arm64".to_string()];
        assert!(s.set_resolution("linux/amd64", 2, res("amd64", "a"), &index));
        assert!(!s.set_resolution("linux/arm64", 2, res("arm64", "b"), &[]));
        assert_eq!(s.platforms(), index);
        assert!(s.offers("linux/arm64"));
        assert!(!s.offers("linux/riscv64"));
    }

    #[test]
    fn kernel_architecture_names_map_to_oci_ones() {
        assert_eq!(platform_key("linux", "x86_64"), "linux/amd64");
        assert_eq!(platform_key("linux", "aarch64"), "linux/arm64");
        assert_eq!(platform_key("linux", "arm64"), "linux/arm64");
    }
}
