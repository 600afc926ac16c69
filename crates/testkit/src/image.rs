//! Builds OCI image layouts (and archives of them) from lists of entries, reproducibly.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// One entry of a layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir(&'static str, u32),
    File(String, Vec<u8>, u32),
    /// A file with an owner and an xattr.
    Owned {
        path: String,
        data: Vec<u8>,
        mode: u32,
        uid: u64,
        gid: u64,
        xattr: Option<(String, Vec<u8>)>,
    },
    Symlink(&'static str, &'static str),
    Hardlink(&'static str, &'static str),
    /// `.wh.<name>` in the entry's directory.
    Whiteout(&'static str),
    /// `.wh..wh..opq` in this directory.
    Opaque(&'static str),
    /// A header written byte by byte (names the tar crate refuses to write).
    RawFile(&'static str),
    Device(&'static str),
}

pub fn file(path: &str, data: &[u8]) -> Entry {
    Entry::File(path.to_string(), data.to_vec(), 0o644)
}

fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(0);
    h
}

/// An uncompressed layer tar.
pub fn layer_tar(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            Entry::Dir(p, mode) => {
                let mut h = header(tar::EntryType::Directory, *mode);
                b.append_data(
                    &mut h,
                    format!("{}/", p.trim_end_matches('/')),
                    std::io::empty(),
                )
                .unwrap();
            }
            Entry::File(p, data, mode) => {
                let mut h = header(tar::EntryType::Regular, *mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data.as_slice()).unwrap();
            }
            Entry::Owned {
                path,
                data,
                mode,
                uid,
                gid,
                xattr,
            } => {
                if let Some((k, v)) = xattr {
                    b.append_pax_extensions([(format!("SCHILY.xattr.{k}").as_str(), v.as_slice())])
                        .unwrap();
                }
                let mut h = header(tar::EntryType::Regular, *mode);
                h.set_uid(*uid);
                h.set_gid(*gid);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, data.as_slice()).unwrap();
            }
            Entry::Symlink(p, t) => {
                let mut h = header(tar::EntryType::Symlink, 0o777);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::Hardlink(p, t) => {
                let mut h = header(tar::EntryType::Link, 0o644);
                b.append_link(&mut h, p, t).unwrap();
            }
            Entry::Whiteout(p) => {
                let (dir, name) = p.rsplit_once('/').map_or(("", *p), |(d, n)| (d, n));
                let wh = if dir.is_empty() {
                    format!(".wh.{name}")
                } else {
                    format!("{dir}/.wh.{name}")
                };
                let mut h = header(tar::EntryType::Regular, 0o644);
                b.append_data(&mut h, wh, std::io::empty()).unwrap();
            }
            Entry::Opaque(dir) => {
                let mut h = header(tar::EntryType::Regular, 0o644);
                b.append_data(
                    &mut h,
                    format!("{}/.wh..wh..opq", dir.trim_end_matches('/')),
                    std::io::empty(),
                )
                .unwrap();
            }
            Entry::RawFile(name) => {
                let mut h = tar::Header::new_old();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(0);
                h.set_size(4);
                h.set_cksum();
                b.get_mut().extend_from_slice(h.as_bytes());
                let mut block = [0u8; 512];
                block[..4].copy_from_slice(b"evil");
                b.get_mut().extend_from_slice(&block);
            }
            Entry::Device(p) => {
                let mut h = header(tar::EntryType::Block, 0o600);
                h.set_device_major(8).unwrap();
                h.set_device_minor(0).unwrap();
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// gzip with a fixed header, so the same tar gives the same blob.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A built image: where its layout is and what is in it.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub layout: PathBuf,
    pub tag: String,
    pub manifest_digest: String,
    pub manifest_size: u64,
    /// OCI architecture.
    pub arch: String,
    /// (blob digest, diff id, blob size) per layer, lowest first.
    pub layers: Vec<(String, String, u64)>,
}

/// Builds an image from layers.
#[derive(Clone, Debug, Default)]
pub struct ImageBuilder {
    layers: Vec<(Vec<u8>, bool)>,
    item_config: Option<serde_json::Value>,
    /// Layer media type override (e.g. a component).
    media_type: Option<String>,
    corrupt_diff_id: bool,
    /// OCI architecture of the image (`amd64` unless set).
    arch: Option<String>,
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a gzip layer of these entries.
    pub fn layer(mut self, entries: &[Entry]) -> Self {
        self.layers.push((layer_tar(entries), true));
        self
    }

    /// Adds a layer from a ready tar.
    pub fn raw_layer(mut self, tar: Vec<u8>, gzipped: bool) -> Self {
        self.layers.push((tar, gzipped));
        self
    }

    pub fn item_config(mut self, v: serde_json::Value) -> Self {
        self.item_config = Some(v);
        self
    }

    pub fn media_type(mut self, m: &str) -> Self {
        self.media_type = Some(m.to_string());
        self
    }

    /// The image's architecture (OCI name), in its config and its index entry.
    pub fn arch(mut self, arch: &str) -> Self {
        self.arch = Some(arch.to_string());
        self
    }

    /// Writes a wrong diff id into the image config.
    pub fn corrupt_diff_id(mut self) -> Self {
        self.corrupt_diff_id = true;
        self
    }

    /// Writes the OCI layout to `dir` with the image tagged `tag`.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> BuiltImage {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| -> (String, u64) {
            let d = digest(data);
            std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
            (d, data.len() as u64)
        };
        let mut layers = Vec::new();
        let mut descs = Vec::new();
        for (tar, gz) in &self.layers {
            let diff_id = if self.corrupt_diff_id {
                digest(b"not the tar")
            } else {
                digest(tar)
            };
            let blob = if *gz { gzip(tar) } else { tar.clone() };
            let (d, size) = put(&blob);
            let media = self.media_type.clone().unwrap_or_else(|| {
                if *gz {
                    "application/vnd.oci.image.layer.v1.tar+gzip"
                } else {
                    "application/vnd.oci.image.layer.v1.tar"
                }
                .to_string()
            });
            descs.push(serde_json::json!({"mediaType": media, "digest": d, "size": size}));
            layers.push((d, diff_id, size));
        }
        let arch = self.arch.as_deref().unwrap_or("amd64");
        let config = serde_json::json!({
            "architecture": arch, "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.1.clone()).collect::<Vec<_>>()},
        });
        let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
        let mut manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
            "layers": descs,
        });
        if let Some(ic) = &self.item_config {
            let (d, s) = put(&serde_json::to_vec(ic).unwrap());
            manifest["aosService"] = serde_json::json!({"mediaType": "application/vnd.aos.item.config.v1+json", "digest": d, "size": s});
        }
        let mbytes = serde_json::to_vec(&manifest).unwrap();
        let (md, ms) = put(&mbytes);
        let built = BuiltImage {
            layout: dir.to_path_buf(),
            tag: tag.to_string(),
            manifest_digest: md,
            manifest_size: ms,
            arch: arch.to_string(),
            layers,
        };
        write_index(dir, tag, &[&built]);
        built
    }
}

/// Writes the layout's `index.json` listing `images` (written to the same layout, one per
/// platform) under `tag`: a multi-platform image.
pub fn write_index(dir: &Path, tag: &str, images: &[&BuiltImage]) {
    let manifests: Vec<_> = images
        .iter()
        .map(|b| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": b.manifest_digest, "size": b.manifest_size,
                "platform": {"os": "linux", "architecture": b.arch},
                "annotations": {"org.opencontainers.image.ref.name": tag},
            })
        })
        .collect();
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Packs a layout directory into a tar archive.
pub fn archive(layout: &Path, out: &Path) {
    let mut b = tar::Builder::new(std::fs::File::create(out).unwrap());
    b.append_dir_all(".", layout).unwrap();
    b.finish().unwrap();
}
