//! `aosctl inspect`: what an image holds (the manifest for one platform, its image config and
//! item config, and every platform an index offers), and `hint`: what to try when reaching a
//! registry fails.

use aos_image::oci::{self, Root};
use aos_image::source::{self, BlobSource, SourceConfig, SourceSpec};

/// An archive, a layout directory, an HTTP layout or a registry reference.
pub fn source_spec(image: &str) -> SourceSpec {
    if std::path::Path::new(image).exists() {
        SourceSpec::Archive(image.into())
    } else if image.starts_with("http://") || image.starts_with("https://") {
        SourceSpec::Http(image.to_string())
    } else {
        SourceSpec::Registry(image.to_string())
    }
}

/// The platforms (`os/arch[/variant]`) an image offers: those of its index (nested indexes
/// followed once), or none for a single manifest.
pub async fn platforms(src: &dyn BlobSource) -> Result<Vec<String>, aos_image::ImageError> {
    let mut out = Vec::new();
    let Root::Index(entries) = oci::parse_root(&src.root().await?)? else {
        return Ok(out);
    };
    for e in entries {
        match &e.platform {
            Some(p) => out.push(match &p.variant {
                Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                None => format!("{}/{}", p.os, p.architecture),
            }),
            // A layout's index entry without a platform may point at the real index.
            None => {
                if let Root::Index(inner) = oci::parse_root(&src.manifest(&e.digest).await?)? {
                    out.extend(inner.iter().filter_map(|i| {
                        i.platform
                            .as_ref()
                            .map(|p| format!("{}/{}", p.os, p.architecture))
                    }));
                }
            }
        }
    }
    Ok(out)
}

/// The document `inspect` prints for `image` on `platform` (`os/arch`).
pub async fn inspect(
    image: &str,
    insecure: &[String],
    platform: &str,
) -> anyhow::Result<serde_json::Value> {
    let (os, arch) = platform
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--platform {platform:?}: use os/arch, e.g. linux/arm64"))?;
    let config = SourceConfig {
        insecure_registries: insecure.to_vec(),
        ..SourceConfig::default()
    };
    let src = source::open(&source_spec(image), &config).await?;
    let offered = platforms(&*src)
        .await
        .map_err(|e| with_hint(e.into(), image, insecure))?;
    let r = match aos_image::pipeline::resolve(&*src, os, arch, None).await {
        Ok(r) => r,
        Err(aos_image::ImageError::NoPlatform(p)) => anyhow::bail!(
            "{image} has no image for {p}; it offers {} (choose one with --platform)",
            offered.join(", ")
        ),
        Err(e) => return Err(with_hint(e.into(), image, insecure)),
    };
    let mut doc = serde_json::json!({
        "manifestDigest": r.manifest_digest,
        "manifest": serde_json::from_slice::<serde_json::Value>(&r.manifest_bytes)?,
        "config": serde_json::from_slice::<serde_json::Value>(&r.config_bytes)?,
        "itemConfig": r.item_config,
    });
    if !offered.is_empty() {
        doc["platform"] = aos_api::platform_key(os, arch).into();
        doc["platforms"] = offered.into();
    }
    Ok(doc)
}

/// Adds what to try to an error of reaching `image`'s registry.
pub fn with_hint(e: anyhow::Error, image: &str, insecure: &[String]) -> anyhow::Error {
    let host = image.split('/').next().unwrap_or(image);
    match hint(&format!("{e:#}"), host, insecure) {
        Some(h) => e.context(h),
        None => e,
    }
}

/// What to try after a registry error: plain HTTP spoken to a TLS client, a refused
/// connection, or missing credentials.
pub fn hint(message: &str, host: &str, insecure: &[String]) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let plain = m.contains("invalidcontenttype")
        || m.contains("corrupt message")
        || m.contains("wrong version number")
        || m.contains("http request to an https server");
    if plain && !insecure.iter().any(|h| h == host) {
        return Some(format!(
            "{host} does not speak TLS; if it is a plain-HTTP registry, add --insecure {host}"
        ));
    }
    if m.contains("connection refused") {
        return Some(format!(
            "nothing listens at {host}: is the registry running?"
        ));
    }
    if m.contains("401") || m.contains("unauthorized") || m.contains("not authorized") {
        return Some(format!(
            "{host} wants credentials: aosd reads them from images.credentials"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_plain_http_refusals_and_credentials() {
        let tls = "error sending request: client error (Connect): received corrupt message of type InvalidContentType";
        assert!(hint(tls, "r:5000", &[])
            .unwrap()
            .contains("--insecure r:5000"));
        assert_eq!(hint(tls, "r:5000", &["r:5000".into()]), None);
        let refused = "tcp connect error: Connection refused (os error 111)";
        assert!(hint(refused, "r:5000", &[])
            .unwrap()
            .contains("nothing listens"));
        assert!(hint("HTTP 401 Unauthorized", "r", &[])
            .unwrap()
            .contains("credentials"));
        assert_eq!(hint("manifest unknown", "r", &[]), None);
    }
}
