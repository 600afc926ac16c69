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

/// Space held until dropped. What it holds is what is still to be written: as the work writes
/// its files, the filesystem's free space counts them and the reservation shrinks
/// ([`Reservation::resize`]), so that nothing is counted twice.
#[derive(Debug)]
pub struct Reservation {
    allocator: Arc<SpaceAllocator>,
    bytes: Mutex<u64>,
}

impl Reservation {
    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `bytes` from now on: less as files land on disk; more when an estimate was short,
    /// which fails (holding what it held) if the disk has no more to give.
    pub fn resize(&self, bytes: u64) -> Result<(), ImageError> {
        let mut held = self.bytes.lock().unwrap_or_else(|e| e.into_inner());
        if bytes > *held {
            let extra = bytes - *held;
            let available = self.allocator.available();
            if extra > available {
                return Err(ImageError::NotEnoughSpace {
                    path: self.allocator.path.display().to_string(),
                    need: extra,
                    available,
                });
            }
        }
        let mut r = self
            .allocator
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(*held) + bytes;
        *held = bytes;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let held = *self.bytes.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut r = self
            .allocator
            .reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *r = r.saturating_sub(held);
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
            bytes: Mutex::new(bytes),
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

    #[test]
    fn a_reservation_shrinks_as_its_files_land_and_grows_only_into_free_space() {
        let dir = std::env::temp_dir();
        let a = SpaceAllocator::new(&dir, 0);
        let free = a.available();
        let r = a.reserve(free / 2).unwrap();
        r.resize(free / 4).unwrap();
        assert_eq!(r.bytes(), free / 4);
        assert!(a.available() + (64 << 20) >= free - free / 4);
        assert!(matches!(
            r.resize(free * 2),
            Err(ImageError::NotEnoughSpace { .. })
        ));
        assert_eq!(r.bytes(), free / 4, "a failed grow keeps what was held");
        drop(r);
        assert!(a.available() + (64 << 20) >= free);
    }
}
