//! A small HTTP/1.1 server of a directory with `Range` support, written by hand on purpose: it
//! misbehaves on demand (drops connections, corrupts bytes, ignores ranges, throttles), which a
//! well-behaved server crate would not. It counts what it sends.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the server misbehaves. Faults apply to blob responses only.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Close the connection after this many body bytes, for the first `drop_times` responses.
    pub drop_after: Option<u64>,
    pub drop_times: u64,
    /// Flip one byte in the middle of every blob.
    pub corrupt: bool,
    /// Answer 200 with the whole blob even when a range is asked for.
    pub ignore_range: bool,
    /// Send at most this many bytes per second.
    pub throttle: Option<u64>,
    /// Send more bytes than the file has (garbage appended).
    pub oversize: bool,
    /// Apply the faults only to paths containing this text.
    pub only: Option<String>,
}

#[derive(Default)]
struct State {
    faults: Mutex<Faults>,
    sent: AtomicU64,
    drops: AtomicU64,
    requests: Mutex<Vec<(String, Option<u64>)>>,
    stop: AtomicBool,
}

/// Serves `root` on 127.0.0.1 until dropped.
pub struct HttpServer {
    pub port: u16,
    state: Arc<State>,
}

impl HttpServer {
    pub fn serve(root: impl Into<PathBuf>, faults: Faults) -> HttpServer {
        let root = root.into();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            faults: Mutex::new(faults),
            ..State::default()
        });
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (root, st) = (root.clone(), st.clone());
                std::thread::spawn(move || {
                    let _ = handle(conn, &root, &st);
                });
            }
        });
        HttpServer { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Body bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.state.sent.load(Ordering::SeqCst)
    }

    /// (path, range start) of every request so far.
    pub fn requests(&self) -> Vec<(String, Option<u64>)> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn set_faults(&self, f: Faults) {
        *self.state.faults.lock().unwrap() = f;
        self.state.drops.store(0, Ordering::SeqCst);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(conn: TcpStream, root: &std::path::Path, st: &State) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut range = None;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h
                .strip_prefix("Range: bytes=")
                .or_else(|| h.strip_prefix("range: bytes="))
            {
                range = v.trim_end_matches('-').parse::<u64>().ok();
            }
        }
        st.requests.lock().unwrap().push((path.clone(), range));
        let faults = st.faults.lock().unwrap().clone();
        let file = root.join(path.trim_start_matches('/'));
        let Ok(mut f) = std::fs::File::open(&file).and_then(|f| {
            if f.metadata()?.is_file() {
                Ok(f)
            } else {
                Err(std::io::ErrorKind::NotFound.into())
            }
        }) else {
            out.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
            continue;
        };
        let size = f.metadata()?.len();
        let is_blob = path.contains("/blobs/")
            && faults
                .only
                .as_ref()
                .is_none_or(|o| path.contains(o.as_str()));
        let start = match range {
            Some(r) if !(is_blob && faults.ignore_range) && r < size => r,
            _ => 0,
        };
        let extra = if is_blob && faults.oversize { 4096 } else { 0 };
        let len = size - start + extra;
        let head = if start > 0 {
            format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {len}\r\nContent-Range: bytes {start}-{}/{size}\r\n\r\n", size - 1)
        } else {
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")
        };
        out.write_all(head.as_bytes())?;
        f.seek(SeekFrom::Start(start))?;
        let drop_now = is_blob
            && faults.drop_after.is_some()
            && st.drops.load(Ordering::SeqCst) < faults.drop_times;
        let mut pos = start;
        let mut sent_here = 0u64;
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let chunk = &mut buf[..n];
            if is_blob && faults.corrupt && pos <= size / 2 && size / 2 < pos + n as u64 {
                chunk[(size / 2 - pos) as usize] ^= 0xff;
            }
            let mut chunk: &[u8] = chunk;
            if drop_now {
                let limit = faults.drop_after.unwrap_or(0);
                if sent_here + chunk.len() as u64 >= limit {
                    chunk = &chunk[..(limit - sent_here) as usize];
                    out.write_all(chunk)?;
                    st.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    st.drops.fetch_add(1, Ordering::SeqCst);
                    let _ = out.shutdown(std::net::Shutdown::Both);
                    return Ok(());
                }
            }
            out.write_all(chunk)?;
            st.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            sent_here += chunk.len() as u64;
            pos += n as u64;
            if let Some(rate) = faults.throttle {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
            }
        }
        if extra > 0 {
            out.write_all(&vec![0x5a; extra as usize])?;
        }
        out.flush()?;
    }
}
