//! A source in memory, for tests of whoever drives the `BlobSource` and `Sources` ports (the
//! Item controller's tests run on it without a registry or the network): an image layout's
//! entries held as bytes, answering as a layout does, with faults to order (calls that fail as
//! a dropped connection does, blobs cut short). It passes the same [`super::conformance`] suite
//! as the directory, archive, HTTP and registry sources.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use super::{blob_entry, fetch_err, BlobSource, BlobStream, LayoutReader, SourceSpec, Sources};
use crate::ImageError;

#[derive(Default)]
struct Faults {
    /// Calls that fail before the next one answers.
    fail_next: u32,
    /// Blob streams end after this many bytes.
    cut_after: Option<u64>,
    calls: Vec<String>,
}

/// See the module documentation.
pub struct FakeSource {
    name: String,
    entries: BTreeMap<String, Bytes>,
    faults: Mutex<Faults>,
}

impl FakeSource {
    /// A source named `name` holding no entry.
    pub fn new(name: &str) -> Self {
        FakeSource {
            name: name.into(),
            entries: BTreeMap::new(),
            faults: Mutex::new(Faults::default()),
        }
    }

    /// A source holding every file of the image layout at `dir`.
    pub fn from_layout(name: &str, dir: &Path) -> std::io::Result<Self> {
        fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Bytes>) -> std::io::Result<()> {
            for e in std::fs::read_dir(dir)? {
                let p = e?.path();
                if p.is_dir() {
                    walk(root, &p, out)?;
                } else if let Ok(rel) = p.strip_prefix(root) {
                    out.insert(rel.display().to_string(), std::fs::read(&p)?.into());
                }
            }
            Ok(())
        }
        let mut s = FakeSource::new(name);
        walk(dir, dir, &mut s.entries)?;
        Ok(s)
    }

    /// Adds (or replaces) an entry of the layout (`index.json`, `blobs/sha256/<hex>`).
    pub fn put(&mut self, entry: &str, bytes: impl Into<Bytes>) {
        self.entries.insert(entry.into(), bytes.into());
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next `n` calls fail as a dropped connection does.
    pub fn fail_next(&self, n: u32) {
        self.faults().fail_next = n;
    }

    /// Blob streams end after `n` bytes (`None`: whole).
    pub fn cut_after(&self, n: Option<u64>) {
        self.faults().cut_after = n;
    }

    /// The calls so far, as `op digest` lines (`root` for the root).
    pub fn calls(&self) -> Vec<String> {
        self.faults().calls.clone()
    }

    fn call(&self, op: &str, what: &str) -> Result<(), ImageError> {
        let mut f = self.faults();
        f.calls.push(format!("{op} {what}").trim().to_string());
        if f.fail_next > 0 {
            f.fail_next -= 1;
            return Err(fetch_err(
                what,
                &self.name,
                "connection reset (a fault of the fake)",
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl LayoutReader for FakeSource {
    fn layout_name(&self) -> String {
        self.name.clone()
    }

    async fn read_entry(&self, entry: &str, limit: u64) -> Result<Option<Bytes>, ImageError> {
        match self.entries.get(entry) {
            Some(b) if b.len() as u64 > limit => Err(ImageError::TooLarge {
                digest: entry.into(),
                limit,
            }),
            b => Ok(b.cloned()),
        }
    }
}

#[async_trait::async_trait]
impl BlobSource for FakeSource {
    fn name(&self) -> String {
        self.name.clone()
    }

    async fn root(&self) -> Result<Bytes, ImageError> {
        self.call("root", "")?;
        self.layout_root().await
    }

    async fn manifest(&self, digest: &str) -> Result<Bytes, ImageError> {
        self.call("manifest", digest)?;
        self.layout_manifest(digest).await
    }

    async fn blob(&self, digest: &str, offset: u64) -> Result<BlobStream, ImageError> {
        self.call("blob", digest)?;
        let b = self
            .entries
            .get(&blob_entry(digest)?)
            .ok_or_else(|| fetch_err(digest, &self.name, "not found"))?;
        let start = offset.min(b.len() as u64);
        let mut part = b.slice(start as usize..);
        if let Some(n) = self.faults().cut_after {
            part.truncate(n as usize);
        }
        Ok(BlobStream {
            start,
            stream: futures::stream::iter([Ok(part)]).boxed(),
        })
    }
}

/// Opens fake sources by spec: the sources a test added, and nothing else.
#[derive(Default)]
pub struct FakeSources {
    sources: Mutex<HashMap<String, Arc<FakeSource>>>,
}

impl FakeSources {
    /// No source.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `spec` (as a Layer's `sources` entry spells it) open `source`.
    pub fn add(&self, spec: &SourceSpec, source: Arc<FakeSource>) {
        self.sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.to_string(), source);
    }
}

#[async_trait::async_trait]
impl Sources for FakeSources {
    async fn open(&self, spec: &SourceSpec) -> Result<Arc<dyn BlobSource>, ImageError> {
        let found = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&spec.to_string())
            .cloned();
        match found {
            Some(s) => Ok(s),
            None => Err(fetch_err(&spec.to_string(), "the fake", "no such source")),
        }
    }
}
