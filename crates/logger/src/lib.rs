//! Instance log files. The containerd logging binary (`aos-logger`) reads a task's stdout and
//! stderr pipes and writes CRI-style lines (`<RFC 3339 time> <stream> <F|P> <text>`) to
//! `<dir>/output.log`, rotated by size into `output.log.1`, `output.log.2`, …; this module owns
//! that format, the rotating writer, and the reader behind `aosctl logs` (tail, since, follow).

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};

mod pipe;
pub use pipe::{LogOptions, PipeRecords};

/// The file being written; older ones carry a numeric suffix, `.1` the newest of them.
pub const CURRENT: &str = "output.log";
/// Longest line written as one record; longer output is split into partial (`P`) records.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LogError {
    let what = what.into();
    move |source| LogError::Io { what, source }
}

/// Which pipe a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One record of a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub time: DateTime<Utc>,
    pub stream: Stream,
    /// The text continues in the next record (a line longer than [`MAX_LINE`]).
    pub partial: bool,
    /// Without the trailing newline.
    pub text: String,
}

/// Cuts a pipe's bytes into records: one per line (without its newline), a partial record
/// for every [`MAX_LINE`] bytes without one, and what is left at the end as a partial record.
#[derive(Debug, Default)]
pub struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// The records `bytes` completes: (text, partial).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(Vec<u8>, bool)> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                out.push((line, false));
            } else if self.pending.len() >= MAX_LINE {
                out.push((self.pending.drain(..MAX_LINE).collect(), true));
            } else {
                return out;
            }
        }
    }

    /// The pipe ended: the text of an unfinished line, if any.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        (!self.pending.is_empty()).then(|| std::mem::take(&mut self.pending))
    }
}

impl LogLine {
    /// The record as written to the file, newline included.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.time.to_rfc3339_opts(SecondsFormat::Nanos, true),
            self.stream.as_str(),
            if self.partial { "P" } else { "F" },
            self.text
        )
    }

    /// Parses one record (with or without its newline); `None` for anything else.
    pub fn parse(line: &str) -> Option<LogLine> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let mut parts = line.splitn(4, ' ');
        let time = DateTime::parse_from_rfc3339(parts.next()?)
            .ok()?
            .with_timezone(&Utc);
        let stream = match parts.next()? {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            _ => return None,
        };
        let partial = match parts.next()? {
            "P" => true,
            "F" => false,
            _ => return None,
        };
        Some(LogLine {
            time,
            stream,
            partial,
            text: parts.next().unwrap_or("").to_string(),
        })
    }
}

/// Appends records to `output.log`, rotating when it would exceed `max_size`; keeps at most
/// `max_files` files in all (the current one included).
pub struct RotatingWriter {
    dir: PathBuf,
    max_size: u64,
    max_files: usize,
    file: File,
    size: u64,
}

/// Logs may hold secrets: readable by root and the log's group only (made so if an older run
/// left them wider).
pub const LOG_MODE: u32 = 0o640;

fn open_current(dir: &Path) -> Result<(File, u64), LogError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = dir.join(CURRENT);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_MODE)
        .open(&path)
        .map_err(io(format!("failed to open {}", path.display())))?;
    let _ = file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE));
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    Ok((file, size))
}

impl RotatingWriter {
    pub fn open(dir: &Path, max_size: u64, max_files: usize) -> Result<Self, LogError> {
        std::fs::create_dir_all(dir).map_err(io(format!("failed to create {}", dir.display())))?;
        let (file, size) = open_current(dir)?;
        Ok(RotatingWriter {
            dir: dir.to_path_buf(),
            max_size: max_size.max(1),
            max_files: max_files.max(1),
            file,
            size,
        })
    }

    pub fn write(&mut self, line: &LogLine) -> Result<(), LogError> {
        let bytes = line.encode();
        if self.size > 0 && self.size + bytes.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file
            .write_all(bytes.as_bytes())
            .map_err(io("failed to write the log"))?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        let name = |n: usize| self.dir.join(format!("{CURRENT}.{n}"));
        if self.max_files == 1 {
            let _ = std::fs::remove_file(self.dir.join(CURRENT));
        } else {
            let _ = std::fs::remove_file(name(self.max_files - 1));
            for n in (1..self.max_files - 1).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            std::fs::rename(self.dir.join(CURRENT), name(1))
                .map_err(io("failed to rotate the log"))?;
        }
        (self.file, self.size) = open_current(&self.dir)?;
        Ok(())
    }
}

/// The log files of `dir`, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(usize, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name
                .strip_prefix(CURRENT)?
                .strip_prefix('.')?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let current = dir.join(CURRENT);
    if current.exists() {
        out.push(current);
    }
    out
}

/// Records of `dir` at or after `since`, the last `tail` of them (all when `None`).
pub fn read(
    dir: &Path,
    tail: Option<usize>,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<LogLine>, LogError> {
    let mut out = std::collections::VecDeque::new();
    for path in files(dir) {
        let f = match File::open(&path) {
            Ok(f) => f,
            // Rotated away between listing and opening.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(format!("failed to open {}", path.display()))(e)),
        };
        for line in BufReader::new(f).split(b'\n') {
            let line = line.map_err(io(format!("failed to read {}", path.display())))?;
            let Some(l) = LogLine::parse(&String::from_utf8_lossy(&line)) else {
                continue;
            };
            if since.is_some_and(|s| l.time < s) {
                continue;
            }
            out.push_back(l);
            if tail.is_some_and(|t| out.len() > t) {
                out.pop_front();
            }
        }
    }
    Ok(out.into())
}

/// Follows `output.log` from its current end (or from the start when `from_start`), across
/// rotations: [`Follower::poll`] returns the records written since the last call.
pub struct Follower {
    dir: PathBuf,
    file: Option<(File, u64)>,
    pending: Vec<u8>,
}

impl Follower {
    pub fn new(dir: &Path, from_start: bool) -> Follower {
        let file = File::open(dir.join(CURRENT)).ok().and_then(|mut f| {
            let ino = f.metadata().ok()?.ino();
            if !from_start {
                f.seek(SeekFrom::End(0)).ok()?;
            }
            Some((f, ino))
        });
        Follower {
            dir: dir.to_path_buf(),
            file,
            pending: Vec::new(),
        }
    }

    pub fn poll(&mut self) -> Vec<LogLine> {
        let mut out = Vec::new();
        loop {
            if let Some((f, _)) = &mut self.file {
                let _ = f.read_to_end(&mut self.pending);
            }
            while let Some(i) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                if let Some(l) = LogLine::parse(&String::from_utf8_lossy(&line)) {
                    out.push(l);
                }
            }
            // The writer rotated: what we hold is finished; go on with the new file.
            let current = std::fs::metadata(self.dir.join(CURRENT))
                .map(|m| m.ino())
                .ok();
            match (&self.file, current) {
                (Some((_, ino)), Some(now)) if *ino == now => return out,
                (_, None) => return out,
                (held, Some(now)) => {
                    self.pending.clear();
                    // Files rotated past in between: those after ours, or all when ours is gone
                    // (rotation drops the oldest first).
                    let held = held.as_ref().map(|(_, ino)| *ino);
                    let rotated: Vec<(PathBuf, u64)> = files(&self.dir)
                        .into_iter()
                        .filter_map(|p| Some((p.clone(), std::fs::metadata(&p).ok()?.ino())))
                        .filter(|(_, ino)| *ino != now)
                        .collect();
                    let skip = rotated
                        .iter()
                        .position(|(_, ino)| Some(*ino) == held)
                        .map_or(if held.is_some() { 0 } else { rotated.len() }, |i| i + 1);
                    for (p, _) in &rotated[skip..] {
                        if let Ok(f) = File::open(p) {
                            for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
                                if let Some(l) = LogLine::parse(&String::from_utf8_lossy(&line)) {
                                    out.push(l);
                                }
                            }
                        }
                    }
                    match File::open(self.dir.join(CURRENT)) {
                        Ok(f) => self.file = Some((f, now)),
                        Err(_) => return out,
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
