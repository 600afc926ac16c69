//! The containerd logging binary of aosd (`binary:///path/aos-logger?--dir=…`): containerd
//! passes the task's stdout and stderr pipes; every line goes to the rotating log of `--dir`
//! with its time and stream. Options arrive as `--key value` pairs in any order.
// A binary: what it cannot log goes to its stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aos_logger::{LogError, LogLine, RotatingWriter, Stream, MAX_LINE};
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

struct Logger(Vec<JoinHandle<()>>);

fn pump(input: impl Read, stream: Stream, out: Arc<Mutex<RotatingWriter>>) {
    let mut reader = BufReader::new(input);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader
            .by_ref()
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let complete = buf.last() == Some(&b'\n');
        if complete {
            buf.pop();
        }
        let line = LogLine {
            time: chrono::Utc::now(),
            stream,
            partial: !complete,
            text: String::from_utf8_lossy(&buf).into_owned(),
        };
        let mut w = out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = w.write(&line) {
            eprintln!("aos-logger: {e}");
        }
    }
}

impl Driver for Logger {
    type Error = Error;

    fn new(config: Config) -> Result<Self, Error> {
        let o = options().map_err(Error::Options)?;
        let writer = RotatingWriter::open(&o.dir, o.max_size, o.max_files).map_err(Error::Log)?;
        let out = Arc::new(Mutex::new(writer));
        let (o1, o2) = (out.clone(), out);
        let (stdout, stderr) = (config.stdout, config.stderr);
        Ok(Logger(vec![
            std::thread::spawn(move || pump(stdout, Stream::Stdout, o1)),
            std::thread::spawn(move || pump(stderr, Stream::Stderr, o2)),
        ]))
    }

    fn run(self) -> Result<(), Error> {
        for t in self.0 {
            let _ = t.join();
        }
        Ok(())
    }
}

fn main() {
    containerd_shim_logging::run::<Logger>();
}
