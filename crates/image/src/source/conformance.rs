//! What every [`BlobSource`] must do, checked on whatever image the source serves (every
//! answer is checked against its digest, so the suite needs no copy of the image): a root that
//! parses, manifests and blobs whose bytes match their digests, a blob resumed from an offset
//! (or served whole from 0, which the pipeline also accepts), small blobs bounded, and a clear
//! error for what is not there. The directory, archive, HTTP and registry sources pass it
//! (crates/image/tests/sources.rs), and so does [`super::fake::FakeSource`].
// A test suite (run by tests of each implementation): a failed unwrap is a failed case.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;

use super::BlobSource;
use crate::oci::{self, Root};
use crate::ImageError;

const ABSENT: &str = "sha256:00000000000000000000000000000000000000000000000000000000000000ee";

async fn whole(src: &dyn BlobSource, digest: &str, offset: u64) -> (u64, Vec<u8>) {
    let b = src.blob(digest, offset).await.unwrap();
    let mut s = b.stream;
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    (b.start, out)
}

/// Runs every case against `src`, which serves an image with at least one layer.
pub async fn run(src: &dyn BlobSource) {
    assert!(!src.name().is_empty(), "a source names itself");
    let root = src.root().await.unwrap();
    let manifest = match oci::parse_root(&root).unwrap() {
        Root::Manifest(m) => *m,
        Root::Index(entries) => {
            let first = entries.first().expect("an index lists a manifest");
            let bytes = src.manifest(&first.digest).await.unwrap();
            assert_eq!(
                oci::sha256_digest(&bytes),
                first.digest,
                "a verified manifest"
            );
            match oci::parse_root(&bytes).unwrap() {
                Root::Manifest(m) => *m,
                Root::Index(_) => panic!("a nested index"),
            }
        }
    };
    assert!(src.manifest(ABSENT).await.is_err(), "an absent manifest");

    let config = src
        .small_blob(&manifest.config.digest, 1 << 20)
        .await
        .unwrap();
    assert_eq!(oci::sha256_digest(&config), manifest.config.digest);
    let layer = manifest.layers.first().expect("an image with a layer");
    let (start, bytes) = whole(src, &layer.digest, 0).await;
    assert_eq!(start, 0);
    assert_eq!(bytes.len() as u64, layer.size);
    assert_eq!(
        oci::sha256_digest(&bytes),
        layer.digest,
        "the layer's bytes"
    );

    let half = layer.size / 2;
    let (start, rest) = whole(src, &layer.digest, half).await;
    match start {
        0 => assert_eq!(rest, bytes, "served whole from 0"),
        s => {
            assert_eq!(s, half, "resumed where asked");
            assert_eq!(rest, bytes[half as usize..], "the rest of the layer");
        }
    }

    let small = src.small_blob(&layer.digest, 1).await;
    assert!(
        matches!(small, Err(ImageError::TooLarge { .. })) || layer.size <= 1,
        "a small blob is bounded: {small:?}"
    );
    let absent = match src.blob(ABSENT, 0).await {
        Err(_) => true,
        // A source may fail only once the stream runs.
        Ok(b) => {
            let mut s = b.stream;
            let mut failed = false;
            let mut got = 0;
            while let Some(c) = s.next().await {
                match c {
                    Ok(c) => got += c.len(),
                    Err(_) => failed = true,
                }
            }
            failed || got == 0
        }
    };
    assert!(absent, "an absent blob is an error (or nothing)");
}

#[cfg(test)]
mod tests {
    use super::super::fake::FakeSource;
    use crate::oci::sha256_digest;

    fn blob(s: &mut FakeSource, bytes: &[u8]) -> String {
        let d = sha256_digest(bytes);
        s.put(
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            bytes.to_vec(),
        );
        d
    }

    #[tokio::test]
    async fn the_fake_passes_the_conformance_suite() {
        let mut s = FakeSource::new("fake");
        let layer = vec![7u8; 1000];
        let layer_d = blob(&mut s, &layer);
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config_d = blob(&mut s, config);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer.len()}],
        })
        .to_string();
        let manifest_d = blob(&mut s, manifest.as_bytes());
        let index = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len()}],
        });
        s.put("index.json", index.to_string());
        super::run(&s).await;
    }
}
