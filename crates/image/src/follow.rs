//! Converting a layer while it downloads: the converter reads the partial blob file as the
//! download writes it (woken at each chunk), so that decompression, the tar checks and the
//! squashfs writer run beside the download instead of after it. The download itself is
//! unchanged (resumable, hashed, verified). Nothing read before the digest is checked is
//! trusted: an image is published only once the blob's digest and the tar's diff id both
//! match, and a conversion that fails while following (the download started over, failed, or
//! the bytes were bad) is done again from the verified blob, whose result is the one that
//! counts.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    /// What the download said it holds last.
    written: u64,
    /// The download went back (a source that ignored a range, a partial file thrown away):
    /// what was read no longer matches the file.
    restarted: bool,
    /// The download ended: `true` verified and complete, `false` failed.
    end: Option<bool>,
}

/// The download's side: it reports its progress and its end.
#[derive(Debug, Default)]
pub struct Follow {
    state: Mutex<State>,
    changed: Condvar,
}

impl Follow {
    pub fn new() -> Arc<Follow> {
        Arc::new(Follow::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The download now holds `have` bytes (its progress callback).
    pub fn progress(&self, have: u64) {
        let mut s = self.lock();
        if have < s.written {
            s.restarted = true;
        }
        s.written = have;
        self.changed.notify_all();
    }

    /// The download ended; `ok`: the blob is complete and its digest matched.
    pub fn finish(&self, ok: bool) {
        self.lock().end = Some(ok);
        self.changed.notify_all();
    }

    /// A reader of the blob's first `size` bytes, from the partial file the download writes
    /// (or the finished blob, if it is already there).
    pub fn reader(self: &Arc<Self>, partial: PathBuf, done: PathBuf, size: u64) -> FollowReader {
        FollowReader {
            follow: self.clone(),
            paths: [partial, done],
            size,
            file: None,
            pos: 0,
        }
    }
}

/// Reads what the download has written, waiting for more until it ends.
pub struct FollowReader {
    follow: Arc<Follow>,
    paths: [PathBuf; 2],
    size: u64,
    file: Option<File>,
    pos: u64,
}

fn broken(what: &str) -> std::io::Error {
    std::io::Error::other(what.to_string())
}

impl Read for FollowReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.pos >= self.size || buf.is_empty() {
                return Ok(0);
            }
            let seen = {
                let s = self.follow.lock();
                if s.restarted {
                    return Err(broken("the download started over"));
                }
                (s.written, s.end)
            };
            if self.file.is_none() {
                self.file = self.paths.iter().find_map(|p| File::open(p).ok());
            }
            if let Some(f) = &mut self.file {
                let want = buf.len().min((self.size - self.pos) as usize);
                let n = f.read(&mut buf[..want])?;
                if n > 0 {
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
            match seen.1 {
                // Nobody downloads any more (the install was cancelled).
                None if Arc::strong_count(&self.follow) == 1 => {
                    return Err(broken("the download was abandoned"))
                }
                Some(false) => return Err(broken("the download failed")),
                // Complete, yet the file read here ended early: not the file that was written.
                Some(true) => return Err(broken("the blob ended before its size")),
                None => {}
            }
            // Wait for the next chunk (or the end); a change since `seen` is not waited for.
            let s = self.follow.lock();
            if s.written == seen.0 && s.end.is_none() && !s.restarted {
                let _ = self
                    .follow
                    .changed
                    .wait_timeout(s, Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_reader_follows_the_writer_to_the_end_and_stops_on_a_restart_or_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (partial, done) = (dir.path().join("b.partial"), dir.path().join("b"));
        let follow = Follow::new();
        let mut r = follow.reader(partial.clone(), done.clone(), 10);
        let writer = {
            let (follow, partial, done) = (follow.clone(), partial.clone(), done.clone());
            std::thread::spawn(move || {
                let mut f = File::create(&partial).unwrap();
                for chunk in [&b"01234"[..], b"56789"] {
                    std::thread::sleep(Duration::from_millis(30));
                    f.write_all(chunk).unwrap();
                    follow.progress(f.metadata().unwrap().len());
                }
                std::fs::rename(&partial, &done).unwrap();
                follow.finish(true);
            })
        };
        let mut all = Vec::new();
        r.read_to_end(&mut all).unwrap();
        writer.join().unwrap();
        assert_eq!(all, b"0123456789");

        // A download that goes back breaks the reader; so does a failed one.
        let follow = Follow::new();
        std::fs::write(&partial, b"abc").unwrap();
        let mut r = follow.reader(partial.clone(), dir.path().join("none"), 10);
        follow.progress(3);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        follow.progress(0);
        assert!(r
            .read(&mut buf)
            .unwrap_err()
            .to_string()
            .contains("started over"));
        let follow = Follow::new();
        let mut r = follow.reader(partial.clone(), dir.path().join("none"), 10);
        follow.finish(false);
        assert_eq!(r.read(&mut buf).unwrap(), 3, "what is there is read first");
        assert!(r.read(&mut buf).unwrap_err().to_string().contains("failed"));
        // A download dropped without a word (a cancelled install) does not keep it waiting.
        let follow = Follow::new();
        let mut r = follow.reader(partial.clone(), dir.path().join("none"), 10);
        drop(follow);
        assert_eq!(r.read(&mut buf).unwrap(), 3);
        assert!(r
            .read(&mut buf)
            .unwrap_err()
            .to_string()
            .contains("abandoned"));
    }
}
