//! A local OCI image layout: a directory, or a tar archive of one (read in place: blobs are
//! served from their offsets in the archive, nothing is copied).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{blob_entry, fetch_err, BlobSource, BlobStream, LayoutReader};
use crate::ImageError;

pub struct FileSource {
    path: PathBuf,
    /// For an archive: entry path → (offset of its data, size).
    index: Option<HashMap<String, (u64, u64)>>,
    /// Longest wait for one read (a hung network filesystem must not hang aosd).
    timeout: Duration,
}

impl FileSource {
    /// Opens a layout directory or an archive of one. Anything else (a FIFO, a device, a
    /// socket) is refused before it is opened, and nothing of a file that is not an archive is
    /// ever quoted back.
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        Self::open_with(path, Duration::from_secs(60))
    }

    /// [`FileSource::open`] off the runtime's threads, given up after `timeout`.
    pub async fn open_timed(path: &Path, timeout: Duration) -> Result<Self, ImageError> {
        let p = path.to_path_buf();
        let work = tokio::task::spawn_blocking(move || Self::open_with(&p, timeout));
        match tokio::time::timeout(timeout, work).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(ImageError::io(
                "the open task failed",
                std::io::Error::other(e),
            )),
            Err(_) => Err(fetch_err(
                "the image",
                &path.display().to_string(),
                format!("no answer from the filesystem in {} s", timeout.as_secs()),
            )),
        }
    }

    fn open_with(path: &Path, timeout: Duration) -> Result<Self, ImageError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ImageError::io(format!("failed to open {}", path.display()), e))?;
        if meta.is_dir() {
            return Ok(FileSource {
                path: path.to_path_buf(),
                index: None,
                timeout,
            });
        }
        if !meta.is_file() {
            return Err(ImageError::InvalidManifest(format!(
                "{} is neither a regular file nor a directory: only image archives and layout directories are read",
                path.display()
            )));
        }
        let file = std::fs::File::open(path)
            .map_err(|e| ImageError::io(format!("failed to open {}", path.display()), e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut index = HashMap::new();
        // The tar reader's own messages may quote the file's bytes: say only what it is not.
        let bad = |_: std::io::Error| {
            ImageError::InvalidManifest(format!(
                "{} is not a tar archive of an image layout",
                path.display()
            ))
        };
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = entry
                .path()
                .map_err(bad)?
                .to_string_lossy()
                .trim_start_matches("./")
                .to_string();
            index.insert(name, (entry.raw_file_position(), entry.size()));
        }
        Ok(FileSource {
            path: path.to_path_buf(),
            index: Some(index),
            timeout,
        })
    }

    /// (file, offset, size) of an entry of the layout.
    fn locate(&self, entry: &str) -> Option<(PathBuf, u64, u64)> {
        match &self.index {
            Some(index) => index
                .get(entry)
                .map(|(off, size)| (self.path.clone(), *off, *size)),
            None => {
                let p = self.path.join(entry);
                let size = std::fs::metadata(&p).ok()?.len();
                Some((p, 0, size))
            }
        }
    }

    async fn read_whole(&self, entry: &str, limit: u64) -> Result<Option<Bytes>, ImageError> {
        let Some((file, off, size)) = self.locate(entry) else {
            return Ok(None);
        };
        if size > limit {
            return Err(ImageError::InvalidManifest(format!(
                "{entry} is larger than {limit} bytes"
            )));
        }
        let read = async {
            let mut f = tokio::fs::File::open(&file).await?;
            f.seek(SeekFrom::Start(off)).await?;
            let mut buf = vec![0; size as usize];
            f.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(self.timeout, read)
            .await
            .map_err(|_| fetch_err(entry, &self.name(), "the filesystem did not answer"))?
            .map_err(|e| fetch_err(entry, &self.name(), e))?;
        Ok(Some(buf.into()))
    }
}

#[async_trait::async_trait]
impl LayoutReader for FileSource {
    fn layout_name(&self) -> String {
        self.path.display().to_string()
    }

    async fn read_entry(&self, entry: &str, limit: u64) -> Result<Option<Bytes>, ImageError> {
        self.read_whole(entry, limit).await
    }
}

#[async_trait::async_trait]
impl BlobSource for FileSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    async fn root(&self) -> Result<Bytes, ImageError> {
        self.layout_root().await
    }

    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        self.layout_manifest(digest).await
    }

    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError> {
        let entry = blob_entry(digest)?;
        let (file, off, size) = self
            .locate(&entry)
            .ok_or_else(|| fetch_err(digest, &self.name(), "not found"))?;
        let offset = offset.min(size);
        let open = async {
            let mut f = tokio::fs::File::open(&file).await?;
            f.seek(SeekFrom::Start(off + offset)).await?;
            Ok::<_, std::io::Error>(f)
        };
        let f = tokio::time::timeout(self.timeout, open)
            .await
            .map_err(|_| fetch_err(digest, &self.name(), "the filesystem did not answer"))?
            .map_err(|e| fetch_err(digest, &self.name(), e))?;
        let reader = f.take(size - offset);
        let timeout = self.timeout;
        // Every chunk within the timeout, as for a network source.
        let stream = tokio_stream::StreamExt::timeout(
            tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10),
            timeout,
        )
        .map(|r| match r {
            Ok(chunk) => chunk,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the filesystem did not answer",
            )),
        });
        Ok(BlobStream {
            start: offset,
            stream: stream.boxed(),
        })
    }
}
