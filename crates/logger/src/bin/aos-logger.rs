//! The containerd logging binary of aosd (`binary:///path/aos-logger?--dir=…`): containerd
//! passes the task's stdout and stderr pipes; every line goes to the rotating log of `--dir`
//! with its time and stream. Options arrive as `--key value` pairs in any order.
// A binary: what it cannot log goes to its stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;
use std::path::PathBuf;

use aos_logger::{Lines, LogError, LogLine, RotatingWriter, Stream};
use containerd_shim_logging::{Config, Driver};

struct Options {
    dir: PathBuf,
    max_size: u64,
    max_files: usize,
}

fn options() -> Result<Options, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut o = Options {
        dir: PathBuf::new(),
        max_size: 1 << 20,
        max_files: 3,
    };
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            return Err(format!("option {} has no value", pair[0]));
        };
        match k.as_str() {
            "--dir" => o.dir = PathBuf::from(v),
            "--max-size" => o.max_size = v.parse().map_err(|e| format!("--max-size: {e}"))?,
            "--max-files" => o.max_files = v.parse().map_err(|e| format!("--max-files: {e}"))?,
            _ => return Err(format!("unknown option {k}")),
        }
    }
    if o.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(o)
}

/// Printed (through Debug) by the logging crate when the logger cannot start.
#[derive(Debug)]
#[allow(dead_code)]
enum Error {
    Options(String),
    Log(LogError),
}

/// One of the task's pipes and the start of a line not yet ended.
struct Pipe {
    file: std::fs::File,
    stream: Stream,
    lines: Lines,
    open: bool,
}

impl Pipe {
    fn new(file: std::fs::File, stream: Stream) -> Pipe {
        Pipe {
            file,
            stream,
            lines: Lines::default(),
            open: true,
        }
    }

    /// Reads once and writes the records that completes; at the end of the pipe, what is left.
    fn read(&mut self, out: &mut RotatingWriter) {
        let mut chunk = [0u8; 8192];
        let n = match self.file.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.open = false;
            if let Some(rest) = self.lines.finish() {
                self.emit(out, &rest, true);
            }
            return;
        }
        for (text, partial) in self.lines.push(&chunk[..n]) {
            self.emit(out, &text, partial);
        }
    }

    fn emit(&self, out: &mut RotatingWriter, text: &[u8], partial: bool) {
        let line = LogLine {
            time: chrono::Utc::now(),
            stream: self.stream,
            partial,
            text: String::from_utf8_lossy(text).into_owned(),
        };
        if let Err(e) = out.write(&line) {
            eprintln!("aos-logger: {e}");
        }
    }
}

/// Both pipes, served by one thread: one logger runs per task, so it has no thread stacks or
/// malloc arenas of its own per pipe.
struct Logger {
    pipes: [Pipe; 2],
    out: RotatingWriter,
}

impl Driver for Logger {
    type Error = Error;

    fn new(config: Config) -> Result<Self, Error> {
        let o = options().map_err(Error::Options)?;
        let out = RotatingWriter::open(&o.dir, o.max_size, o.max_files).map_err(Error::Log)?;
        Ok(Logger {
            pipes: [
                Pipe::new(config.stdout, Stream::Stdout),
                Pipe::new(config.stderr, Stream::Stderr),
            ],
            out,
        })
    }

    fn run(mut self) -> Result<(), Error> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        while self.pipes.iter().any(|p| p.open) {
            let ready: Vec<bool> = {
                let mut fds: Vec<PollFd> = self
                    .pipes
                    .iter()
                    .filter(|p| p.open)
                    .map(|p| PollFd::new(p.file.as_fd(), PollFlags::POLLIN))
                    .collect();
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        eprintln!("aos-logger: poll: {e}");
                        return Ok(());
                    }
                }
                fds.iter()
                    .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
                    .collect()
            };
            let open = self.pipes.iter_mut().filter(|p| p.open);
            for (p, ready) in open.zip(ready) {
                if ready {
                    p.read(&mut self.out);
                }
            }
        }
        Ok(())
    }
}

fn main() {
    containerd_shim_logging::run::<Logger>();
}
