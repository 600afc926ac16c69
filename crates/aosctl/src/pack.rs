//! `aosctl pack`: a service folder (`meta/config.yaml` + `src/` in rootfs layout) becomes an OCI
//! image archive (`blobs/sha256/…`, `manifest.json`, `index.json`, `oci-layout`) with one gzip
//! layer of `src/`, the image config and the item config. Reproducible: sorted entries, fixed
//! times and owners, deterministic gzip, so the same folder gives the same digests.

use std::io::Write;
use std::path::Path;

use aos_image::oci::sha256_digest as digest;
mod component;
mod config;
mod rootfs;

pub use component::{pack_boot, PackedComponent};
pub use config::*;
pub use rootfs::{pack_rootfs, IMAGE_INFO};

/// Why a pack failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{file}:{line}: {path}: {message}")]
    Config {
        file: String,
        line: usize,
        path: String,
        message: String,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] aos_image::ImageError),
}

/// `meta/config.yaml`.
/// Reads `config.yaml`; errors name the line and the key (unknown keys included).
pub fn parse_config(text: &str, file: &str) -> Result<ServiceConfig, PackError> {
    let de = serde_norway::Deserializer::from_str(text);
    let cfg: ServiceConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let line = e.inner().location().map_or(0, |l| l.line());
        let msg = aos_api::manifest::clean_message(&e.inner().to_string());
        PackError::Config {
            file: file.to_string(),
            line,
            path: e.path().to_string(),
            message: msg,
        }
    })?;
    let mut problems = Vec::new();
    for (i, p) in cfg.configuration.exposed_ports.iter().enumerate() {
        if let Err(e) = aos_api::kinds::parse_port_spec(p) {
            problems.push((format!("configuration.exposedPorts[{i}]"), e));
        }
    }
    for (i, c) in cfg.configuration.allowed_connections.iter().enumerate() {
        let ok = c.split_once('/').is_some_and(|(id, ports)| {
            !id.is_empty() && aos_api::kinds::parse_port_spec(ports).is_ok()
        });
        if !ok {
            problems.push((
                format!("configuration.allowedConnections[{i}]"),
                format!("{c:?} must be itemId/port[-port][/tcp|udp]"),
            ));
        }
    }
    // What the runtime would refuse only when the task starts: checked once, here and when
    // the node resolves the image.
    match aos_api::ItemConfig::parse(&item_config(&cfg)) {
        Ok(ic) => problems.extend(
            ic.validate()
                .into_iter()
                .map(|e| (format!("configuration.{}", e.path), e.message)),
        ),
        Err(e) => problems.push(("configuration".into(), e.message)),
    }
    if let Some((path, message)) = problems.into_iter().next() {
        let line = aos_api::manifest::locate(text, &path).unwrap_or(0);
        return Err(PackError::Config {
            file: file.to_string(),
            line,
            path,
            message,
        });
    }
    Ok(cfg)
}

/// The tar of `src/`: sorted, owned by root, times at 0.
pub fn layer_tar(src: &Path) -> Result<Vec<u8>, PackError> {
    let read = |p: &Path| {
        let p = p.display().to_string();
        move |source| PackError::Read { path: p, source }
    };
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    let mut stack = vec![src.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).map_err(read(&dir))? {
            let e = e.map_err(read(&dir))?;
            let p = e.path();
            if e.file_type().map_err(read(&p))?.is_dir() {
                stack.push(p.clone());
            }
            entries.push(p);
        }
    }
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(src).expect("below src");
        let meta = std::fs::symlink_metadata(&p).map_err(read(&p))?;
        let mut h = tar::Header::new_gnu();
        h.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        let name = if meta.is_dir() {
            format!("{}/", rel.display())
        } else {
            rel.display().to_string()
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(read(&p))?;
            b.append_link(&mut h, &name, &target).map_err(read(&p))?;
        } else if meta.is_file() {
            let f = std::fs::File::open(&p).map_err(read(&p))?;
            b.append_data(&mut h, &name, f).map_err(read(&p))?;
        } else if meta.is_dir() {
            b.append_data(&mut h, &name, std::io::empty())
                .map_err(read(&p))?;
        }
    }
    b.into_inner().map_err(read(src))
}

/// gzip with no name and time 0 in the header.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

/// The item config of AosEdge (`application/vnd.aos.item.config.v1+json`).
pub fn item_config(cfg: &ServiceConfig) -> serde_json::Value {
    let c = &cfg.configuration;
    let mut v = serde_json::json!({
        "author": cfg.publisher.author,
        "skipResourceLimits": c.skip_resource_limits,
        "quotas": c.quotas,
        "requestedResources": c.requested_resources,
        "runParameters": c.run_parameters,
        "rootfs": c.rootfs,
    });
    let m = v.as_object_mut().expect("an object");
    let mut put = |k: &str, x: serde_json::Value| {
        if !x.is_null() && x != serde_json::json!([]) && x != serde_json::json!({}) {
            m.insert(k.to_string(), x);
        }
    };
    put("hostname", serde_json::json!(c.hostname));
    put("balancingPolicy", serde_json::json!(c.balancing_policy));
    put("runtimes", serde_json::json!(c.runtimes));
    put("sysctl", serde_json::json!(c.sysctl));
    put("offlineTTL", serde_json::json!(c.offline_ttl));
    put("exposedPorts", serde_json::json!(c.exposed_ports));
    put(
        "allowedConnections",
        serde_json::Value::Object(
            c.allowed_connections
                .iter()
                .map(|a| (a.clone(), serde_json::json!({})))
                .collect(),
        ),
    );
    put("resources", serde_json::json!(c.resources));
    put("permissions", serde_json::json!(c.permissions));
    put("alertRules", c.alert_rules.clone());
    put("seccomp", serde_json::json!(c.seccomp));
    put("networkMode", serde_json::json!(c.network_mode));
    v
}

/// The OCI image config.
pub fn image_config(cfg: &ServiceConfig, diff_id: &str) -> serde_json::Value {
    let c = &cfg.configuration;
    let ports: serde_json::Map<String, serde_json::Value> = c
        .exposed_ports
        .iter()
        .map(|p| {
            (
                if p.contains('/') {
                    p.clone()
                } else {
                    format!("{p}/tcp")
                },
                serde_json::json!({}),
            )
        })
        .collect();
    let mut run = serde_json::json!({
        "Cmd": c.cmd.args(),
        "Env": c.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
        "WorkingDir": c.working_dir.clone().unwrap_or_else(|| "/".into()),
    });
    if let Some(e) = &c.entrypoint {
        run["Entrypoint"] = serde_json::json!(e.args());
    }
    if !ports.is_empty() {
        run["ExposedPorts"] = serde_json::Value::Object(ports);
    }
    serde_json::json!({
        "architecture": cfg.build.arch,
        "os": cfg.build.os,
        "config": run,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
}

/// What a pack produced.
#[derive(Clone, Debug)]
pub struct Packed {
    /// The manifest's digest, or the index's with several platforms.
    pub manifest_digest: String,
    pub layer_digest: String,
    pub config_digest: String,
    pub item_config_digest: String,
}

/// Packs the service folder `dir` into the archive `out`.
pub fn pack(dir: &Path, out: &Path) -> Result<Packed, PackError> {
    pack_for(dir, out, &[])
}

/// Packs for several platforms (`os/arch`); none means the one of `build`. With more than one
/// the archive holds an index of one manifest per platform (the files of `src/` are the same).
pub fn pack_for(dir: &Path, out: &Path, platforms: &[String]) -> Result<Packed, PackError> {
    let cfg_path = dir.join("meta/config.yaml");
    let text = std::fs::read_to_string(&cfg_path).map_err(|source| PackError::Read {
        path: cfg_path.display().to_string(),
        source,
    })?;
    let mut cfg = parse_config(&text, &cfg_path.display().to_string())?;
    let mut targets = Vec::new();
    for p in platforms {
        let (os, arch) = p.split_once('/').ok_or_else(|| PackError::Config {
            file: "--platform".into(),
            line: 0,
            path: p.clone(),
            message: "a platform is os/arch, like linux/arm64".into(),
        })?;
        targets.push((os.to_string(), arch.to_string()));
    }
    if targets.is_empty() {
        targets.push((cfg.build.os.clone(), cfg.build.arch.clone()));
    }
    let tar = layer_tar(&dir.join("src"))?;
    let diff_id = digest(&tar);
    let layer = gzip(&tar);
    let item = serde_json::to_vec(&item_config(&cfg)).expect("json");
    let desc = |media: &str, data: &[u8]| serde_json::json!({"mediaType": media, "digest": digest(data), "size": data.len()});
    let mut blobs = vec![item.clone(), layer.clone()];
    let mut entries = Vec::new();
    let mut first = None;
    for (os, arch) in &targets {
        cfg.build.os = os.clone();
        cfg.build.arch = arch.clone();
        let config = serde_json::to_vec(&image_config(&cfg, &diff_id)).expect("json");
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": aos_image::oci::media::OCI_MANIFEST,
            "config": desc(aos_image::oci::media::OCI_CONFIG, &config),
            "layers": [desc(aos_image::oci::media::LAYER_GZIP, &layer)],
            "itemConfig": desc(aos_image::oci::media::ITEM_CONFIG, &item),
        }))
        .expect("json");
        let mut entry = desc(aos_image::oci::media::OCI_MANIFEST, &manifest);
        entry["platform"] = serde_json::json!({"os": os, "architecture": arch});
        entries.push(entry);
        first.get_or_insert((manifest.clone(), config.clone()));
        blobs.push(config);
        blobs.push(manifest);
    }
    let (manifest, config) = first.expect("at least one platform");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": aos_image::oci::media::OCI_INDEX,
        "manifests": entries,
    }))
    .expect("json");
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("index.json".into(), index.clone()),
        (
            "oci-layout".into(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        ),
    ];
    // The AosEdge archive's single manifest, when there is a single platform.
    if targets.len() == 1 {
        files.push(("manifest.json".into(), manifest.clone()));
    }
    for blob in &blobs {
        let name = format!("blobs/sha256/{}", &digest(blob)[7..]);
        if !files.iter().any(|(n, _)| n == &name) {
            files.push((name, blob.clone()));
        }
    }
    files.sort();
    write_archive(out, &files)?;
    Ok(Packed {
        manifest_digest: if targets.len() == 1 {
            digest(&manifest)
        } else {
            digest(&index)
        },
        layer_digest: digest(&layer),
        config_digest: digest(&config),
        item_config_digest: digest(&item),
    })
}

/// Writes `files` (name, bytes) as an OCI layout tar at `out`: fixed modes and times, the blob
/// directories first.
pub fn write_archive(out: &Path, files: &[(String, Vec<u8>)]) -> Result<(), PackError> {
    write_archive_with(out, files, &[])
}

/// [`write_archive`] with blobs too large for memory, copied from files.
pub fn write_archive_with(
    out: &Path,
    files: &[(String, Vec<u8>)],
    big: &[(String, &Path)],
) -> Result<(), PackError> {
    let werr = |source| PackError::Write {
        path: out.display().to_string(),
        source,
    };
    let f = std::fs::File::create(out).map_err(werr)?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(0);
        h.set_size(0);
        b.append_data(&mut h, dir, std::io::empty()).map_err(werr)?;
    }
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_slice()).map_err(werr)?;
    }
    for (name, path) in big {
        let rerr = |source| PackError::Read {
            path: path.display().to_string(),
            source,
        };
        let f = std::fs::File::open(path).map_err(rerr)?;
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_size(f.metadata().map_err(rerr)?.len());
        b.append_data(&mut h, name, f).map_err(werr)?;
    }
    b.into_inner().map_err(werr)?.flush().map_err(werr)?;
    Ok(())
}
