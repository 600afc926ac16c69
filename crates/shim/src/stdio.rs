//! Where a task's stdout and stderr go, from the URIs containerd passes: nothing (empty), a
//! file (`file://`, or a plain path such as a FIFO of `ctr`), or aosd's rotating log
//! (`binary://…aos-logger?--dir=…&--max-size=…&--max-files=…`). For the log the shim does the
//! logger's work itself: it reads both pipes and writes the records aos-logger would, so a
//! task needs no logger process of its own.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

use aos_logger::{LogLine, LogOptions, PipeRecords, RotatingWriter, Stream};
use percent_encoding::percent_decode_str;
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::runc::Io;

#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("cannot open {what}: {source}")]
    Open {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log URI {uri}: {why}")]
    Uri { uri: String, why: String },
    #[error("cannot open the log: {0}")]
    Log(#[from] aos_logger::LogError),
}

/// Reads the options of a `binary://` URI (aos-logger's, percent-encoded); the binary itself
/// is not run.
pub fn log_options(uri: &str) -> Result<LogOptions, StdioError> {
    let bad = |why: String| StdioError::Uri {
        uri: uri.to_string(),
        why,
    };
    let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
    let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
    let pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let o =
        LogOptions::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).map_err(bad)?;
    if !o.dir.is_absolute() {
        return Err(bad("--dir must be an absolute path".into()));
    }
    Ok(o)
}

fn open_write(path: &Path) -> Result<File, StdioError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| StdioError::Open {
            what: path.display().to_string(),
            source,
        })
}

fn open_uri(uri: &str) -> Result<File, StdioError> {
    if uri.is_empty() {
        return open_write(Path::new("/dev/null"));
    }
    if let Some(path) = uri.strip_prefix("file://") {
        return open_write(Path::new(path));
    }
    if uri.contains("://") {
        return Err(StdioError::Uri {
            uri: uri.to_string(),
            why: "only file:// and aosd's binary:// logs are served".into(),
        });
    }
    open_write(Path::new(uri))
}

/// The streams of a task and, for a log, the copiers that drain them.
pub struct Opened {
    pub io: Io,
    pub copiers: Vec<JoinHandle<()>>,
}

/// Opens what `stdout` and `stderr` name; must run inside the runtime (copiers are tasks).
pub fn open(stdout: &str, stderr: &str) -> Result<Opened, StdioError> {
    if stdout.starts_with("binary://") {
        let o = log_options(stdout)?;
        if stderr != stdout {
            return Err(StdioError::Uri {
                uri: stderr.to_string(),
                why: "stderr must go to the same log as stdout".into(),
            });
        }
        let writer = Arc::new(Mutex::new(RotatingWriter::open(
            &o.dir,
            o.max_size,
            o.max_files,
        )?));
        let pipe = |stream| -> Result<(File, JoinHandle<()>), StdioError> {
            let (r, w) = nix::unistd::pipe().map_err(|e| StdioError::Open {
                what: "a pipe".into(),
                source: e.into(),
            })?;
            let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(r).map_err(|source| {
                StdioError::Open {
                    what: "a pipe".into(),
                    source,
                }
            })?;
            let task = tokio::spawn(copy(rx, stream, writer.clone()));
            Ok((File::from(w), task))
        };
        let (out, a) = pipe(Stream::Stdout)?;
        let (err, b) = pipe(Stream::Stderr)?;
        return Ok(Opened {
            io: Io {
                stdout: out,
                stderr: err,
            },
            copiers: vec![a, b],
        });
    }
    Ok(Opened {
        io: Io {
            stdout: open_uri(stdout)?,
            stderr: open_uri(stderr)?,
        },
        copiers: Vec::new(),
    })
}

/// Drains one pipe into the log until every writer closed it.
async fn copy(
    mut rx: tokio::net::unix::pipe::Receiver,
    stream: Stream,
    out: Arc<Mutex<RotatingWriter>>,
) {
    let mut records = PipeRecords::new(stream);
    let mut chunk = vec![0u8; 4096];
    let write = |line: LogLine| {
        let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = w.write(&line) {
            log::warn!("log write failed: {e}");
        }
    };
    loop {
        let n = match rx.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => 0,
        };
        if n == 0 {
            records.finish().into_iter().for_each(write);
            return;
        }
        records.push(&chunk[..n]).into_iter().for_each(write);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn the_log_options_are_read_from_the_binary_uri_as_aosd_writes_them() {
        let o = log_options(
            "binary:///usr/bin/aos-logger?--dir=/var/log/a%20b&--max-size=2048&--max-files=5",
        )
        .unwrap();
        assert_eq!(
            o,
            LogOptions {
                dir: PathBuf::from("/var/log/a b"),
                max_size: 2048,
                max_files: 5
            }
        );
    }

    #[test]
    fn a_log_uri_without_a_directory_or_with_an_unknown_option_is_refused() {
        assert!(log_options("binary:///x?--max-size=1").is_err());
        assert!(log_options("binary:///x?--dir=/a&--color=1").is_err());
        assert!(log_options("binary:///x?--dir=rel").is_err());
        assert!(open_uri("fifo://x").is_err());
    }

    #[tokio::test]
    async fn both_pipes_end_up_as_timestamped_records_of_their_stream() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let uri = format!("binary:///aos-logger?--dir={}", dir.path().display());
        let mut o = open(&uri, &uri).unwrap();
        o.io.stdout.write_all(b"out one\nout two\n").unwrap();
        o.io.stderr.write_all(b"err without newline").unwrap();
        drop(o.io);
        for c in o.copiers {
            c.await.unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(aos_logger::CURRENT)).unwrap();
        let records: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert!(records.contains(&"stdout F out one"), "{text}");
        assert!(records.contains(&"stdout F out two"), "{text}");
        assert!(records.contains(&"stderr P err without newline"), "{text}");
    }
}
