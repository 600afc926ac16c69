//! Disk space reservations: room is reserved before a download starts and given back when the
//! work is done (or fails), so that concurrent installs cannot together overfill the disk.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::ImageError;

/// Reserves space on the filesystem that holds `path`, keeping `keep_free` bytes untouched.
#[derive(Debug)]
pub struct SpaceAllocator {
    path: PathBuf,
    keep_free: u64,
    reserved: Mutex<u64>,
}

/// Space held until dropped.
#[derive(Debug)]
pub struct Reservation {
    allocator: Arc<SpaceAllocator>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self
            .allocator
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(self.bytes);
    }
}

impl SpaceAllocator {
    pub fn new(path: impl Into<PathBuf>, keep_free: u64) -> Arc<Self> {
        Arc::new(SpaceAllocator {
            path: path.into(),
            keep_free,
            reserved: Mutex::new(0),
        })
    }

    /// Bytes that can still be reserved.
    pub fn available(&self) -> u64 {
        // The field types differ between 32- and 64-bit targets.
        #[allow(clippy::useless_conversion)]
        let free = nix::sys::statvfs::statvfs(&self.path)
            .map(|s| u64::from(s.blocks_available()) * u64::from(s.fragment_size()))
            .unwrap_or(0);
        let reserved = *self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        free.saturating_sub(reserved).saturating_sub(self.keep_free)
    }

    /// Reserves `bytes`, or says how much is missing.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, ImageError> {
        let available = self.available();
        if bytes > available {
            return Err(ImageError::NotEnoughSpace {
                path: self.path.display().to_string(),
                need: bytes,
                available,
            });
        }
        *self.reserved.lock().unwrap_or_else(|e| e.into_inner()) += bytes;
        Ok(Reservation {
            allocator: self.clone(),
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_given_back_on_drop() {
        let dir = std::env::temp_dir();
        let a = SpaceAllocator::new(&dir, 0);
        let free = a.available();
        let r = a.reserve(free / 2).unwrap();
        assert!(a.available() <= free - free / 2 + (1 << 20));
        assert!(matches!(
            a.reserve(free),
            Err(ImageError::NotEnoughSpace { .. })
        ));
        drop(r);
        assert!(a.available() + (64 << 20) >= free);
    }
}
