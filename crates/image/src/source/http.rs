//! An OCI image layout served over HTTP(S): `index.json` (or the single `manifest.json` of an
//! AosEdge archive) and `blobs/sha256/<hex>`, read with `Range` for resume.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use reqwest::header::RANGE;
use reqwest::StatusCode;

use super::{fetch_err, BlobSource, BlobStream, SourceConfig};
use crate::ImageError;

pub struct HttpSource {
    base: String,
    client: reqwest::Client,
}

impl HttpSource {
    pub fn new(base: &str, config: &SourceConfig) -> Result<Self, ImageError> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout);
        for f in &config.ca_files {
            let pem = std::fs::read(f)
                .map_err(|e| ImageError::io(format!("failed to read CA {}", f.display()), e))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| fetch_err("a CA", &f.display().to_string(), e))?;
            b = b.add_root_certificate(cert);
        }
        let client = b
            .build()
            .map_err(|e| fetch_err("an HTTP client", base, e))?;
        Ok(HttpSource {
            base: base.trim_end_matches('/').to_string(),
            client,
        })
    }

    async fn get_small(&self, path: &str) -> Result<Option<Bytes>, ImageError> {
        let url = format!("{}/{path}", self.base);
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| fetch_err(path, &self.name(), e))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp
            .error_for_status()
            .map_err(|e| fetch_err(path, &self.name(), e))?;
        if resp.content_length().unwrap_or(0) > 16 << 20 {
            return Err(ImageError::InvalidManifest(format!(
                "{url} is larger than 16 MiB"
            )));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| fetch_err(path, &self.name(), e))?;
        Ok(Some(body))
    }
}

#[async_trait::async_trait]
impl BlobSource for HttpSource {
    fn name(&self) -> String {
        self.base.clone()
    }

    async fn root(&self) -> Result<Bytes, ImageError> {
        for entry in ["index.json", "manifest.json"] {
            if let Some(b) = self.get_small(entry).await? {
                return Ok(b);
            }
        }
        Err(fetch_err(
            "index.json or manifest.json",
            &self.name(),
            "not found",
        ))
    }

    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        let hex = crate::digest_hex(digest)
            .ok_or_else(|| ImageError::InvalidManifest(digest.to_string()))?;
        let b = self
            .get_small(&format!("blobs/sha256/{hex}"))
            .await?
            .ok_or_else(|| fetch_err(digest, &self.name(), "not found"))?;
        crate::oci::verify("the manifest", &b, digest)?;
        Ok(b)
    }

    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError> {
        let hex = crate::digest_hex(digest)
            .ok_or_else(|| ImageError::InvalidManifest(digest.to_string()))?;
        let url = format!("{}/blobs/sha256/{hex}", self.base);
        let mut req = self.client.get(&url);
        if offset > 0 {
            req = req.header(RANGE, format!("bytes={offset}-"));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| fetch_err(digest, &self.name(), e))?;
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
