//! Where images come from: an OCI registry, an OCI image layout served over HTTP(S), or a local
//! layout directory or archive. Every source answers the same four questions; the pipeline
//! verifies every byte it gets from any of them.

pub mod conformance;
pub mod fake;
mod file;
mod http;
pub mod reference;
mod registry;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;

pub use file::FileSource;
pub use http::HttpSource;
pub use registry::RegistrySource;

use crate::ImageError;

/// A blob's bytes from `start` on (the source may ignore a requested offset and start at 0).
pub struct BlobStream {
    pub start: u64,
    pub stream: BoxStream<'static, std::io::Result<Bytes>>,
}

/// What every source can do.
#[async_trait::async_trait]
pub trait BlobSource: Send + Sync {
    /// A human name for messages.
    fn name(&self) -> String;
    /// The manifest or index the source points at.
    async fn root(&self) -> Result<Bytes, ImageError>;
    /// A manifest by digest, verified.
    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError>;
    /// A blob from `offset` on (not verified: the caller hashes what it keeps).
    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError>;

    /// A small blob (config, item config) read whole, at most `limit` bytes, verified.
    async fn small_blob(&self, digest: &str, limit: u64) -> Result<Bytes, ImageError> {
        let mut s = self.blob(digest, 0).await?.stream;
        let mut buf = Vec::new();
        while let Some(chunk) = s.next().await {
            let chunk = chunk.map_err(|e| fetch_err(digest, &self.name(), e))?;
            buf.extend_from_slice(&chunk);
            if buf.len() as u64 > limit {
                return Err(ImageError::TooLarge {
                    digest: digest.to_string(),
                    limit,
                });
            }
        }
        crate::oci::verify(digest, &buf, digest)?;
        Ok(buf.into())
    }
}

/// An error's message followed by those of its causes ("error sending request …: client error
/// (Connect): tcp connect error: Connection refused"), without repeats: HTTP clients keep the
/// useful part (refused, TLS, DNS) in the causes.
pub fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(c) = next {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        next = c.source();
    }
    out
}

pub(crate) fn fetch_err(what: &str, source: &str, e: impl fmt::Display) -> ImageError {
    ImageError::Fetch {
        what: what.to_string(),
        source_name: source.to_string(),
        message: e.to_string(),
    }
}

/// Most bytes of an index or manifest read from a layout.
const MAX_DOCUMENT: u64 = 16 << 20;

/// `blobs/sha256/<hex>` of a digest.
pub(crate) fn blob_entry(digest: &str) -> Result<String, ImageError> {
    let hex =
        crate::digest_hex(digest).ok_or_else(|| ImageError::InvalidManifest(digest.to_string()))?;
    Ok(format!("blobs/sha256/{hex}"))
}

/// An OCI image layout, wherever it is (directory, archive, HTTP): small entries by path.
#[async_trait::async_trait]
pub(crate) trait LayoutReader: Send + Sync {
    fn layout_name(&self) -> String;
    /// The entry, or `None` when the layout has no such entry.
    async fn read_entry(&self, entry: &str, limit: u64) -> Result<Option<Bytes>, ImageError>;

    /// `index.json`, or the single `manifest.json` of an AosEdge archive.
    async fn layout_root(&self) -> Result<Bytes, ImageError> {
        for entry in ["index.json", "manifest.json"] {
            if let Some(b) = self.read_entry(entry, MAX_DOCUMENT).await? {
                return Ok(b);
            }
        }
        Err(fetch_err(
            "index.json or manifest.json",
            &self.layout_name(),
            "not found",
        ))
    }

    /// A manifest by digest from `blobs/`, verified.
    async fn layout_manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        let b = self
            .read_entry(&blob_entry(digest)?, MAX_DOCUMENT)
            .await?
            .ok_or_else(|| fetch_err(digest, &self.layout_name(), "not found"))?;
        crate::oci::verify("the manifest", &b, digest)?;
        Ok(b)
    }
}

/// Where to fetch from, as written in a Layer's `sources`: `registry:host[:port]/repo[:tag]`,
/// `http:<base URL>` or `archive:<path>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Registry(String),
    Http(String),
    Archive(PathBuf),
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::Registry(r) => write!(f, "registry:{r}"),
            SourceSpec::Http(u) => write!(f, "http:{u}"),
            SourceSpec::Archive(p) => write!(f, "archive:{}", p.display()),
        }
    }
}

impl std::str::FromStr for SourceSpec {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, ImageError> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            ImageError::InvalidManifest(format!("source {s:?} is not kind:location"))
        })?;
        Ok(match kind {
            "registry" => SourceSpec::Registry(rest.to_string()),
            "http" => SourceSpec::Http(rest.to_string()),
            "archive" => SourceSpec::Archive(PathBuf::from(rest)),
            other => {
                return Err(ImageError::InvalidManifest(format!(
                    "unknown source kind {other:?}"
                )))
            }
        })
    }
}

impl SourceSpec {
    /// The same source without a tag or digest: where blobs of the image live.
    pub fn repository(&self) -> SourceSpec {
        match self {
            SourceSpec::Registry(r) => {
                let no_digest = r.split('@').next().unwrap_or(r);
                // A tag follows the last ':' after the last '/'.
                let slash = no_digest.rfind('/').unwrap_or(0);
                let repo = match no_digest[slash..].rfind(':') {
                    Some(i) => &no_digest[..slash + i],
                    None => no_digest,
                };
                SourceSpec::Registry(repo.to_string())
            }
            other => other.clone(),
        }
    }
}

/// Credentials for one registry host.
#[derive(Clone, Debug, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    /// A bearer token instead of a username and password.
    #[serde(default)]
    pub token: String,
}

/// How sources connect.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Registry hosts (`host:port`) reached over plain HTTP.
    pub insecure_registries: Vec<String>,
    pub credentials: BTreeMap<String, Credentials>,
    /// Extra CA certificates (PEM) trusted for HTTPS.
    pub ca_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
    /// Longest pause in a transfer before it counts as failed.
    pub read_timeout: Duration,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            insecure_registries: Vec::new(),
            credentials: BTreeMap::new(),
            ca_files: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// Whether a writer that is not root may name `path` as an archive source: only inside one of
/// `dirs`, after every symlink is resolved (so a link cannot lead out). Returns the resolved
/// path, or why not.
pub fn archive_allowed(path: &Path, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let real = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let inside = dirs.iter().any(|d| {
        d.canonicalize()
            .is_ok_and(|d| real.starts_with(&d) && real != d)
    });
    if inside {
        Ok(real)
    } else if dirs.is_empty() {
        Err(format!(
            "only root may name local archives ({}): no images.archive_dirs are configured for other writers",
            path.display()
        ))
    } else {
        Err(format!(
            "{} is outside images.archive_dirs ({}), the only places other writers than root may name",
            path.display(),
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// Opens sources by spec: the port the Item and Layer controllers drive. The real one is a
/// [`SourceConfig`]; tests use [`fake::FakeSources`].
#[async_trait::async_trait]
pub trait Sources: Send + Sync {
    /// The source `spec` names.
    async fn open(&self, spec: &SourceSpec) -> Result<Arc<dyn BlobSource>, ImageError>;
}

#[async_trait::async_trait]
impl Sources for SourceConfig {
    async fn open(&self, spec: &SourceSpec) -> Result<Arc<dyn BlobSource>, ImageError> {
        open(spec, self).await
    }
}

/// Opens a source; a local one off the runtime's threads and within the read timeout.
pub async fn open(
    spec: &SourceSpec,
    config: &SourceConfig,
) -> Result<Arc<dyn BlobSource>, ImageError> {
    Ok(match spec {
        SourceSpec::Registry(r) => Arc::new(RegistrySource::new(r, config)?),
        SourceSpec::Http(u) => Arc::new(HttpSource::new(u, config)?),
        SourceSpec::Archive(p) => Arc::new(FileSource::open_timed(p, config.read_timeout).await?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_specs_round_trip_and_drop_tags_for_the_repository() {
        for s in [
            "registry:127.0.0.1:5000/aos/hello:1.0",
            "http:http://h/x",
            "archive:/tmp/a.tar",
        ] {
            assert_eq!(s.parse::<SourceSpec>().unwrap().to_string(), s);
        }
        let r: SourceSpec = "registry:127.0.0.1:5000/aos/hello:1.0".parse().unwrap();
        assert_eq!(
            r.repository().to_string(),
            "registry:127.0.0.1:5000/aos/hello"
        );
        let r: SourceSpec = "registry:127.0.0.1:5000/aos/hello@sha256:abc"
            .parse()
            .unwrap();
        assert_eq!(
            r.repository().to_string(),
            "registry:127.0.0.1:5000/aos/hello"
        );
        let r: SourceSpec = "registry:localhost:5000/hello".parse().unwrap();
        assert_eq!(r.repository().to_string(), "registry:localhost:5000/hello");
        assert!("ftp:x".parse::<SourceSpec>().is_err());
    }
}
