//! The image pipeline: where images come from ([`source`]), reading manifests, indexes and
//! configs ([`oci`]), resumable verified downloads ([`download`]), turning a layer tar into a
//! read-only squashfs image with overlayfs whiteouts while checking every entry ([`convert`],
//! [`tarfilter`]), the content-addressed layer store with mounts and integrity checks
//! ([`layerstore`]), and disk space reservations ([`space`]).

pub mod convert;
pub mod download;
mod error;
pub mod follow;
pub mod layerstore;
pub mod oci;
pub mod pipeline;
pub mod source;
pub mod space;
pub mod stack;
pub mod tarfilter;

pub use error::ImageError;

/// `sha256:<hex>` → `<hex>`, if it is a sha256 digest.
pub fn digest_hex(digest: &str) -> Option<&str> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')))
}
