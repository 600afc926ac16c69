//! A local OCI image layout: a directory, or a tar archive of one (read in place: blobs are
//! served from their offsets in the archive, nothing is copied).

use std::collections::HashMap;
use std::io::SeekFrom;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{blob_entry, fetch_err, BlobSource, BlobStream, LayoutReader};
use crate::ImageError;

pub struct FileSource {
    path: PathBuf,
    /// For an archive: entry path → (offset of its data, size).
    index: Option<HashMap<String, (u64, u64)>>,
}

impl FileSource {
    pub fn open(path: &Path) -> Result<Self, ImageError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ImageError::io(format!("failed to open {}", path.display()), e))?;
        if meta.is_dir() {
            return Ok(FileSource {
                path: path.to_path_buf(),
                index: None,
            });
        }
        let file = std::fs::File::open(path)
            .map_err(|e| ImageError::io(format!("failed to open {}", path.display()), e))?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut index = HashMap::new();
        let bad = |e: std::io::Error| {
            ImageError::InvalidManifest(format!("{} is not a tar archive: {e}", path.display()))
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
        let mut f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| fetch_err(entry, &self.name(), e))?;
        f.seek(SeekFrom::Start(off))
            .await
            .map_err(|e| fetch_err(entry, &self.name(), e))?;
        let mut buf = vec![0; size as usize];
        f.read_exact(&mut buf)
            .await
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
        let mut f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| fetch_err(digest, &self.name(), e))?;
        f.seek(SeekFrom::Start(off + offset))
            .await
            .map_err(|e| fetch_err(digest, &self.name(), e))?;
        let reader = f.take(size - offset);
        Ok(BlobStream {
            start: offset,
            stream: tokio_util::io::ReaderStream::with_capacity(reader, 256 << 10).boxed(),
        })
    }
}
