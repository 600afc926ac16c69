//! Resumable, verified blob downloads: bytes go to `<hex>.partial`, which survives failures,
//! restarts of aosd and reboots; the next attempt asks the source for the rest with a range
//! (`Range` over HTTP), re-hashing what is already there. A blob is renamed into place only when
//! its size and sha256 match its descriptor; more bytes than the descriptor says, or the wrong
//! digest, throw the partial file away.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::layerstore::LayerStore;
use crate::source::BlobSource;
use crate::ImageError;

/// The reference's schedule: 3 attempts, waits of 1 s, 2 s, 4 s (at most 5 s).
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 3,
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `n` (0-based).
    pub fn wait(&self, n: u32) -> Duration {
        self.first_wait
            .saturating_mul(1 << n.min(20))
            .min(self.max_wait)
    }
}

fn io(ctx: String) -> impl FnOnce(std::io::Error) -> ImageError {
    move |e| ImageError::io(ctx, e)
}

/// Hashes what a partial file already holds.
async fn hash_existing(path: &std::path::Path) -> Result<(Sha256, u64), ImageError> {
    let mut h = Sha256::new();
    let mut n = 0;
    let Ok(mut f) = tokio::fs::File::open(path).await else {
        return Ok((h, 0));
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let k = f
            .read(&mut buf)
            .await
            .map_err(io(format!("failed to read {}", path.display())))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((h, n))
}

/// One attempt: continue the partial file to the end, then verify and publish it.
async fn attempt(
    source: &dyn BlobSource,
    digest: &str,
    size: u64,
    store: &LayerStore,
    durable: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<PathBuf, ImageError> {
    let done = store.blob_path(digest)?;
    let partial = store.partial_path(digest)?;
    let (mut hasher, mut have) = hash_existing(&partial).await?;
    if have > size {
        tokio::fs::remove_file(&partial)
            .await
            .map_err(io("failed to reset a partial blob".into()))?;
        (hasher, have) = (Sha256::new(), 0);
    }
    if have < size {
        let blob = source.blob(digest, have).await?;
        if blob.start != have {
            if blob.start != 0 {
                return Err(crate::source::fetch_err(
                    digest,
                    &source.name(),
                    format!("asked for byte {have}, got {}", blob.start),
                ));
            }
            // The source ignored the range: start over.
            (hasher, have) = (Sha256::new(), 0);
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(have == 0)
            .append(have > 0)
            .open(&partial)
            .await
            .map_err(io(format!("failed to open {}", partial.display())))?;
        // 256 KiB: large enough for few writes, small enough for a device pulling several
        // layers at once (each has one).
        let mut out = tokio::io::BufWriter::with_capacity(256 << 10, file);
        let mut stream = blob.stream;
        progress(have);
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    out.flush()
                        .await
                        .map_err(io("failed to write a partial blob".into()))?;
                    return Err(crate::source::fetch_err(digest, &source.name(), e));
                }
            };
            if have + chunk.len() as u64 > size {
                drop(out);
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(ImageError::TooLarge {
                    digest: digest.to_string(),
                    limit: size,
                });
            }
            hasher.update(&chunk);
            out.write_all(&chunk)
                .await
                .map_err(io("failed to write a partial blob".into()))?;
            have += chunk.len() as u64;
            progress(have);
        }
        out.flush()
            .await
            .map_err(io("failed to write a partial blob".into()))?;
        if have < size {
            return Err(ImageError::Truncated {
                digest: digest.to_string(),
                got: have,
                want: size,
            });
        }
    }
    let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
    if actual != digest {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(ImageError::DigestMismatch {
            what: format!("blob from {}", source.name()),
            expected: digest.to_string(),
            actual,
        });
    }
    if durable {
        let f = tokio::fs::File::open(&partial)
            .await
            .map_err(io("failed to open a blob".into()))?;
        f.sync_all()
            .await
            .map_err(io("failed to sync a blob".into()))?;
    }
    tokio::fs::rename(&partial, &done)
        .await
        .map_err(io(format!("failed to publish {}", done.display())))?;
    Ok(done)
}

/// Downloads a blob into the store (or finds it there), retrying transient failures on the
/// policy's schedule. `progress` gets the bytes held so far. `durable` syncs the blob to disk
/// before it is published; blobs that are checked again downstream (service layers, whose diff
/// id is verified while they are converted) skip that.
pub async fn fetch_blob(
    source: &dyn BlobSource,
    digest: &str,
    size: u64,
    store: &LayerStore,
    policy: &RetryPolicy,
    durable: bool,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<PathBuf, ImageError> {
    let done = store.blob_path(digest)?;
    if done.exists() {
        progress(size);
        return Ok(done);
    }
    let mut n = 0;
    loop {
        match attempt(source, digest, size, store, durable, progress).await {
            Ok(p) => return Ok(p),
            Err(e) if e.is_transient() && n + 1 < policy.attempts => {
                tracing::info!(digest, attempt = n + 1, error = %e, "download failed; retrying");
                tokio::time::sleep(policy.wait(n)).await;
                n += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedule_is_the_references() {
        let p = RetryPolicy::default();
        let waits: Vec<u64> = (0..4).map(|n| p.wait(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5]);
    }
}
