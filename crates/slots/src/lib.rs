//! What OS updates are made of, below the controllers: the ports (EFI variables, slot devices,
//! the machine that reboots, the health checks) with their real implementations and the pieces
//! tests use in their place, UEFI load options, and records that survive a power cut.
#![warn(missing_docs)]

pub mod component;
pub mod crash;
pub mod device;
pub mod efi;
pub mod health;
pub mod machine;
pub mod partition;
pub mod record;
pub mod sim;
pub mod step;

/// Why a step of an OS update failed.
#[derive(Debug, thiserror::Error)]
pub enum SlotsError {
    /// A file step.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// EFI variables that cannot be read or written as they must.
    #[error("EFI variables: {0}")]
    Efi(String),
    /// A load option that does not decode.
    #[error("a boot entry that does not read: {0}")]
    LoadOption(String),
    /// A record that does not read.
    #[error("{0}")]
    Record(String),
    /// A record that does not encode.
    #[error("failed to encode a record: {0}")]
    Encode(#[from] serde_json::Error),
    /// An image that does not fit its slot.
    #[error("the image needs {need} bytes and the slot has {have}")]
    TooLarge {
        /// Bytes the image unpacks to (at least).
        need: u64,
        /// Bytes of the slot.
        have: u64,
    },
    /// Bytes that are not what they should be.
    #[error("{what}: expected {expected}, got {actual}")]
    Mismatch {
        /// What was checked.
        what: String,
        /// The digest (or size) it must have.
        expected: String,
        /// What it has.
        actual: String,
    },
    /// An image that is not of its kind.
    #[error("{0}")]
    BadImage(String),
    /// A command that failed.
    #[error("{0}")]
    Command(String),
}

impl SlotsError {
    /// CamelCase, for conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            SlotsError::Io { .. } => "IoError",
            SlotsError::Efi(_) | SlotsError::LoadOption(_) => "EfiVariablesFailed",
            SlotsError::Record(_) | SlotsError::Encode(_) => "RecordFailed",
            SlotsError::TooLarge { .. } => "ImageTooLarge",
            SlotsError::Mismatch { .. } => "DigestMismatch",
            SlotsError::BadImage(_) => "InvalidImage",
            SlotsError::Command(_) => "CommandFailed",
        }
    }
}
