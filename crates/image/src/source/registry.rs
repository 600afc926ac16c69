//! An OCI registry through `oci-client`: basic or bearer auth, extra CAs, plain HTTP only for
//! hosts listed as insecure, ranged blob reads for resume.

use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{
    BlobResponse, Certificate, CertificateEncoding, ClientConfig, ClientProtocol,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::{fetch_err, BlobSource, BlobStream, SourceConfig};
use crate::oci::media;
use crate::ImageError;

pub struct RegistrySource {
    reference: Reference,
    client: Client,
    auth: RegistryAuth,
}

impl RegistrySource {
    pub fn new(reference: &str, config: &SourceConfig) -> Result<Self, ImageError> {
        let reference = super::reference::parse(reference).map_err(|e| {
            ImageError::InvalidManifest(format!("bad registry reference {reference:?}: {e}"))
        })?;
        let mut certs = Vec::new();
        for f in &config.ca_files {
            let data = std::fs::read(f)
                .map_err(|e| ImageError::io(format!("failed to read CA {}", f.display()), e))?;
            certs.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure_registries.clone()),
            extra_root_certificates: certs,
            connect_timeout: Some(config.connect_timeout),
            read_timeout: Some(config.read_timeout),
            ..ClientConfig::default()
        });
        let auth = match config.credentials.get(reference.registry()) {
            Some(c) if !c.token.is_empty() => RegistryAuth::Bearer(c.token.clone()),
            Some(c) if !c.username.is_empty() => {
                RegistryAuth::Basic(c.username.clone(), c.password.clone())
            }
            _ => RegistryAuth::Anonymous,
        };
        Ok(RegistrySource {
            reference,
            client,
            auth,
        })
    }

    /// Pushes blobs (skipping those the registry has) and then the manifest (or index) under
    /// this source's reference; `manifests` are pushed by digest first (an index's entries).
    pub async fn push(
        &self,
        blobs: &[(String, Bytes)],
        manifests: &[(String, Bytes, String)],
        root: (Bytes, String),
    ) -> Result<(), ImageError> {
        use oci_client::RegistryOperation;
        let err = |what: &str| {
            let name = self.name();
            let what = what.to_string();
            move |e: oci_client::errors::OciDistributionError| {
                fetch_err(&what, &name, super::causes(&e))
            }
        };
        self.client
            .auth(&self.reference, &self.auth, RegistryOperation::Push)
            .await
            .map_err(err("push access"))?;
        for (digest, data) in blobs {
            let image = self.at(digest);
            if self
                .client
                .blob_exists(&image, digest)
                .await
                .unwrap_or(false)
            {
                continue;
            }
            self.client
                .push_blob(&self.reference, data.clone(), digest)
                .await
                .map_err(err(digest))?;
        }
        let header = |m: &str| {
            reqwest::header::HeaderValue::from_str(m)
                .map_err(|e| ImageError::InvalidManifest(e.to_string()))
        };
        for (digest, data, media) in manifests {
            self.client
                .push_manifest_raw(&self.at(digest), data.clone(), header(media)?)
                .await
                .map_err(err(digest))?;
        }
        self.client
            .push_manifest_raw(&self.reference, root.0, header(&root.1)?)
            .await
            .map_err(err("the manifest"))?;
        Ok(())
    }

    fn at(&self, digest: &str) -> Reference {
        Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            digest.to_string(),
        )
    }
}

#[async_trait::async_trait]
impl BlobSource for RegistrySource {
    fn name(&self) -> String {
        format!("registry {}", self.reference)
    }

    async fn root(&self) -> Result<Bytes, ImageError> {
        let (bytes, digest) = self
            .client
            .pull_manifest_raw(&self.reference, &self.auth, media::ACCEPTED_ROOTS)
            .await
            .map_err(|e| fetch_err("the manifest", &self.name(), super::causes(&e)))?;
        if let Some(want) = self.reference.digest() {
            crate::oci::verify("the manifest", &bytes, want)?;
        } else if !digest.is_empty() {
            crate::oci::verify("the manifest", &bytes, &digest)?;
        }
        Ok(bytes)
    }

    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&self.at(digest), &self.auth, media::ACCEPTED_ROOTS)
            .await
            .map_err(|e| fetch_err(digest, &self.name(), super::causes(&e)))?;
        crate::oci::verify("the manifest", &bytes, digest)?;
        Ok(bytes)
    }

    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError> {
        let image = self.at(digest);
        self.client
            .store_auth_if_needed(image.resolve_registry(), &self.auth)
            .await;
        let resp = self
            .client
            .pull_blob_stream_partial(&image, &digest, offset, None)
            .await
            .map_err(|e| fetch_err(digest, &self.name(), super::causes(&e)))?;
        let (start, s) = match resp {
            BlobResponse::Full(s) => (0, s),
            BlobResponse::Partial(s) => (offset, s),
        };
        Ok(BlobStream {
            start,
            stream: s.stream.boxed(),
        })
    }
}
