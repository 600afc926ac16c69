//! Turning a verified layer blob into a squashfs image in one streaming pass: decompress
//! (gzip, zstd or none), hash the uncompressed tar (its diff id), check and convert its entries
//! ([`crate::tarfilter`]), and feed `tar2sqfs`. Memory does not grow with the layer: every stage
//! works on a bounded buffer.

use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use crate::oci::Compression;
use crate::tarfilter::{self, FilterOptions, FilterStats};
use crate::ImageError;

/// How squashfs images are built.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// The `tar2sqfs` binary (squashfs-tools-ng).
    pub tar2sqfs: PathBuf,
    /// `zstd`, `gzip`, `lz4`, `xz` …
    pub compressor: String,
    /// Extra compressor options (`level=1`).
    pub compressor_options: Option<String>,
    /// Compressor threads; 0: one per CPU.
    pub jobs: usize,
    pub filter: FilterOptions,
    /// Convert while the layer downloads ([`crate::follow`]).
    pub follow: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            tar2sqfs: PathBuf::from("tar2sqfs"),
            compressor: "lz4".into(),
            compressor_options: None,
            jobs: 0,
            filter: FilterOptions::default(),
            follow: true,
        }
    }
}

/// What a conversion produced.
#[derive(Clone, Debug)]
pub struct Converted {
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
    pub stats: FilterStats,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

fn decoder<'a>(input: impl Read + 'a, c: Compression) -> Result<Box<dyn Read + 'a>, ImageError> {
    let buffered = BufReader::with_capacity(256 << 10, input);
    Ok(match c {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buffered)
                .map_err(|e| ImageError::io("failed to start zstd", e))?,
        ),
    })
}

/// Converts `blob` into the squashfs image `out` (which must not exist). On any failure `out`
/// is removed. The caller checks the returned diff id against the image config.
pub fn to_squashfs(
    blob: &Path,
    compression: Compression,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<Converted, ImageError> {
    let digest = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = std::fs::File::open(blob)
        .map_err(|e| ImageError::io(format!("failed to open {}", blob.display()), e))?;
    to_squashfs_from(file, &digest, compression, out, opts)
}

/// [`to_squashfs`] from any reader of the compressed blob (one that follows a download as it
/// is written, say); `digest` names the blob in errors.
pub fn to_squashfs_from(
    input: impl Read,
    digest: &str,
    compression: Compression,
    out: &Path,
    opts: &ConvertOptions,
) -> Result<Converted, ImageError> {
    let fail = |message: String| ImageError::Convert {
        digest: digest.to_string(),
        message,
    };
    let mut reader = Hashing {
        inner: decoder(input, compression)?,
        hasher: Sha256::new(),
        count: 0,
    };
    let mut cmd = Command::new(&opts.tar2sqfs);
    cmd.args(["--quiet", "--no-skip", "--compressor", &opts.compressor]);
    if let Some(x) = &opts.compressor_options {
        cmd.args(["--comp-extra", x]);
    }
    if opts.jobs > 0 {
        cmd.args(["--num-jobs", &opts.jobs.to_string()]);
    }
    cmd.arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| {
        fail(format!(
            "failed to start {}: {e} (is squashfs-tools-ng installed?)",
            opts.tar2sqfs.display()
        ))
    })?;
    let stdin = child.stdin.take().expect("stdin is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let errs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let result = (|| {
        // Reads of 256 KiB keep the decompressor and the hash working on big chunks (1 MiB was
        // no faster, and a device converts several layers at once).
        let stats = tarfilter::filter(
            std::io::BufReader::with_capacity(256 << 10, &mut reader),
            BufWriter::with_capacity(256 << 10, stdin),
            opts.filter,
        )?;
        // Whatever follows the end-of-archive marker is part of the diff id too.
        std::io::copy(&mut reader, &mut std::io::sink())
            .map_err(|e| ImageError::io("failed to read the layer", e))?;
        Ok::<_, ImageError>(stats)
    })();
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(out);
            // tar2sqfs stopping on a full disk shows here as a broken pipe: say why.
            if errs
                .join()
                .unwrap_or_default()
                .contains("No space left on device")
            {
                return Err(ImageError::DiskFull {
                    what: format!("tar2sqfs could not write the image of {digest}"),
                });
            }
            return Err(e);
        }
    };
    let status = child
        .wait()
        .map_err(|e| ImageError::io("failed to wait for tar2sqfs", e))?;
    let stderr = errs.join().unwrap_or_default();
    if !status.success() {
        let _ = std::fs::remove_file(out);
        if stderr.contains("No space left on device") {
            return Err(ImageError::DiskFull {
                what: format!("tar2sqfs could not write the image of {digest}"),
            });
        }
        return Err(fail(format!(
            "tar2sqfs failed ({status}): {}",
            stderr.trim()
        )));
    }
    Ok(Converted {
        diff_id: format!("sha256:{}", hex::encode(reader.hasher.finalize())),
        tar_size: reader.count,
        stats,
    })
}

/// Hashes a file: `(sha256:…, size)`.
pub fn file_digest(path: &Path) -> Result<(String, u64), ImageError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| ImageError::io(format!("failed to open {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| ImageError::io(format!("failed to read {}", path.display()), e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((format!("sha256:{}", hex::encode(h.finalize())), n))
}
