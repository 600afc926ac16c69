//! Errors of the image pipeline, each with the CamelCase reason written into conditions.

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("failed to fetch {what} from {source_name}: {message}")]
    Fetch {
        what: String,
        source_name: String,
        message: String,
    },
    #[error("{what} has digest {actual}, expected {expected}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("blob {digest} is larger than its descriptor says ({limit} bytes)")]
    TooLarge { digest: String, limit: u64 },
    #[error("blob {digest} ended after {got} bytes, the descriptor says {want}")]
    Truncated { digest: String, got: u64, want: u64 },
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    #[error("unsupported media type {0:?}")]
    UnsupportedMediaType(String),
    #[error("no manifest for platform {0} in the index")]
    NoPlatform(String),
    #[error("layer refused: {0}")]
    HostileLayer(String),
    #[error("failed to convert layer {digest}: {message}")]
    Convert { digest: String, message: String },
    #[error("not enough space on {path}: need {need} bytes, {available} available")]
    NotEnoughSpace {
        path: String,
        need: u64,
        available: u64,
    },
    /// The disk filled up under work that had room when it started (another writer took it,
    /// or an estimate was short).
    #[error("the disk filled up: {what}")]
    DiskFull { what: String },
    #[error("failed to mount {what}: {message}")]
    Mount { what: String, message: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// An I/O error with what was being done; a full disk becomes [`ImageError::DiskFull`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::StorageFull {
            return ImageError::DiskFull {
                what: context.into(),
            };
        }
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    /// The CamelCase reason for conditions and `lastError`.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Fetch { .. } => "FetchFailed",
            ImageError::DigestMismatch { .. } => "DigestMismatch",
            ImageError::TooLarge { .. } => "BlobTooLarge",
            ImageError::Truncated { .. } => "BlobTruncated",
            ImageError::InvalidManifest(_) => "InvalidManifest",
            ImageError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ImageError::NoPlatform(_) => "NoMatchingPlatform",
            ImageError::HostileLayer(_) => "HostileLayer",
            ImageError::Convert { .. } => "ConvertFailed",
            ImageError::NotEnoughSpace { .. } | ImageError::DiskFull { .. } => "NotEnoughSpace",
            ImageError::Mount { .. } => "MountFailed",
            ImageError::Io { .. } => "IoError",
        }
    }

    /// Whether trying again may help (network trouble) or not (bad content).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ImageError::Fetch { .. }
                | ImageError::Truncated { .. }
                | ImageError::Io { .. }
                | ImageError::Mount { .. }
        )
    }
}
