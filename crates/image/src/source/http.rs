//! An OCI image layout served over HTTP(S): `index.json` (or the single `manifest.json` of an
//! AosEdge archive) and `blobs/sha256/<hex>`, read with `Range` for resume.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::RANGE;
use reqwest::StatusCode;

use super::{blob_entry, fetch_err, BlobSource, BlobStream, LayoutReader, SourceConfig};
use crate::ImageError;

pub struct HttpSource {
    base: String,
    client: reqwest::Client,
}

impl HttpSource {
    pub fn new(base: &str, config: &SourceConfig) -> Result<Self, ImageError> {
        let mut certs = Vec::new();
        for f in &config.ca_files {
            let pem = std::fs::read(f)
                .map_err(|e| ImageError::io(format!("failed to read CA {}", f.display()), e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| fetch_err("a CA", &f.display().to_string(), super::causes(&e)))?;
            certs.push(cert);
        }
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .read_timeout(config.read_timeout)
        };
        // A root without system CA certificates (a minimal device) still fetches over plain
        // HTTP, and over HTTPS from servers the configured CAs vouch for.
        let client = builder()
            .tls_certs_merge(certs.clone())
            .build()
            .or_else(|e| {
                tracing::warn!(error = %e, "no system CA certificates: only the configured CAs are trusted");
                builder().tls_certs_only(certs).build()
            })
            .map_err(|e| fetch_err("an HTTP client", base, super::causes(&e)))?;
        Ok(HttpSource {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn get_small(&self, path: &str, limit: u64) -> Result<Option<Bytes>, ImageError> {
        let url = format!("{}/{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| fetch_err(path, &self.name(), super::causes(&e)))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp
            .error_for_status()
            .map_err(|e| fetch_err(path, &self.name(), super::causes(&e)))?;
        if resp.content_length().unwrap_or(0) > limit {
            return Err(ImageError::InvalidManifest(format!(
                "{url} is larger than {limit} bytes"
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fetch_err(path, &self.name(), super::causes(&e)))?;
        Ok(Some(body))
    }
}

#[async_trait::async_trait]
impl LayoutReader for HttpSource {
    fn layout_name(&self) -> String {
        self.base.clone()
    }

    async fn read_entry(&self, entry: &str, limit: u64) -> Result<Option<Bytes>, ImageError> {
        self.get_small(entry, limit).await
    }
}

#[async_trait::async_trait]
impl BlobSource for HttpSource {
    fn name(&self) -> String {
        self.base.clone()
    }

    async fn root(&self) -> Result<Bytes, ImageError> {
        self.layout_root().await
    }

    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        self.layout_manifest(digest).await
    }

    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError> {
        let url = format!("{}/{}", self.base, blob_entry(digest)?);
        let mut req = self.client.get(&url);
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fetch_err(digest, &self.name(), super::causes(&e)))?;
        let start = match resp.status() {
            StatusCode::PARTIAL_CONTENT => offset,
            StatusCode::OK => 0,
            s => return Err(fetch_err(digest, &self.name(), format!("HTTP {s}"))),
        };
        Ok(BlobStream {
            start,
            stream: resp.bytes_stream().map_err(std::io::Error::other).boxed(),
        })
    }
}
