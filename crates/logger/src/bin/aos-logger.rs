//! The containerd logging binary of aosd (`binary:///path/aos-logger?--dir=…`): containerd
//! passes the task's stdout and stderr pipes; every line goes to the rotating log of `--dir`
//! with its time and stream. Options arrive as `--key value` pairs in any order.
// A binary: what it cannot log goes to its stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::Read;

use aos_logger::{LogError, LogLine, LogOptions, PipeRecords, RotatingWriter, Stream};
use containerd_shim_logging::{Config, Driver};

fn options() -> Result<LogOptions, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pairs = Vec::new();
    for pair in args.chunks(2) {
        let [k, v] = pair else {
            return Err(format!("option {} has no value", pair[0]));
        };
        pairs.push((k.as_str(), v.as_str()));
    }
    LogOptions::from_pairs(pairs)
}

/// Printed (through Debug) by the logging crate when the logger cannot start.
#[derive(Debug)]
#[allow(dead_code)]
enum Error {
    Options(String),
    Log(LogError),
}

/// One of the task's pipes.
struct Pipe {
    file: std::fs::File,
    records: PipeRecords,
    open: bool,
}

impl Pipe {
    fn new(file: std::fs::File, stream: Stream) -> Pipe {
        Pipe {
            file,
            records: PipeRecords::new(stream),
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
            write(out, self.records.finish());
            return;
        }
        for line in self.records.push(&chunk[..n]) {
            write(out, Some(line));
        }
    }
}

fn write(out: &mut RotatingWriter, line: Option<LogLine>) {
    if let Some(line) = line {
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
