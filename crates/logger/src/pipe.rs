//! What every writer of a task's log shares, whoever reads the task's pipes (the aos-logger
//! binary under containerd's Go shim, or aosd's own shim): the options the log takes
//! (`--dir`, `--max-size`, `--max-files`) and the cutting of one pipe's bytes into timestamped
//! records of its stream.

use std::path::PathBuf;

use crate::{Lines, LogLine, Stream};

/// Where and how big a task's log is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    pub dir: PathBuf,
    pub max_size: u64,
    pub max_files: usize,
}

impl LogOptions {
    /// From `(key, value)` pairs (`--dir` is required; 1 MiB and 3 files unless given).
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<LogOptions, String> {
        let mut o = LogOptions {
            dir: PathBuf::new(),
            max_size: 1 << 20,
            max_files: 3,
        };
        for (k, v) in pairs {
            match k {
                "--dir" => o.dir = PathBuf::from(v),
                "--max-size" => o.max_size = v.parse().map_err(|e| format!("--max-size: {e}"))?,
                "--max-files" => {
                    o.max_files = v.parse().map_err(|e| format!("--max-files: {e}"))?
                }
                _ => return Err(format!("unknown option {k}")),
            }
        }
        if o.dir.as_os_str().is_empty() {
            return Err("--dir is required".into());
        }
        Ok(o)
    }
}

/// One pipe of a task: its stream and the start of a line not yet ended.
#[derive(Debug)]
pub struct PipeRecords {
    stream: Stream,
    lines: Lines,
}

impl PipeRecords {
    pub fn new(stream: Stream) -> PipeRecords {
        PipeRecords {
            stream,
            lines: Lines::default(),
        }
    }

    fn record(&self, text: &[u8], partial: bool) -> LogLine {
        LogLine {
            time: chrono::Utc::now(),
            stream: self.stream,
            partial,
            text: String::from_utf8_lossy(text).into_owned(),
        }
    }

    /// The records `bytes` completes, timed now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<LogLine> {
        self.lines
            .push(bytes)
            .into_iter()
            .map(|(text, partial)| self.record(&text, partial))
            .collect()
    }

    /// The pipe ended: what is left as a partial record, if anything.
    pub fn finish(&mut self) -> Option<LogLine> {
        let rest = self.lines.finish()?;
        Some(self.record(&rest, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_take_their_defaults_and_refuse_what_they_do_not_know() {
        let o = LogOptions::from_pairs([("--dir", "/l"), ("--max-files", "5")]).unwrap();
        assert_eq!(
            o,
            LogOptions {
                dir: PathBuf::from("/l"),
                max_size: 1 << 20,
                max_files: 5
            }
        );
        assert!(LogOptions::from_pairs([("--max-size", "1")]).is_err());
        assert!(LogOptions::from_pairs([("--dir", "/l"), ("--max-size", "x")]).is_err());
        assert!(LogOptions::from_pairs([("--dir", "/l"), ("--color", "1")]).is_err());
    }

    #[test]
    fn a_pipe_s_records_carry_its_stream_and_the_unended_rest_is_partial() {
        let mut p = PipeRecords::new(Stream::Stderr);
        let r = p.push(b"one\ntw");
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].stream, r[0].partial, r[0].text.as_str()),
            (Stream::Stderr, false, "one")
        );
        let rest = p.finish().unwrap();
        assert_eq!((rest.partial, rest.text.as_str()), (true, "tw"));
        assert!(p.finish().is_none());
    }
}
