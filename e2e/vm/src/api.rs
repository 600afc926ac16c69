//! aosctl from the host into a running VM: qemu forwards a port of the host's loopback to the
//! guest's 7070, where the root's init relays to aosd's API socket; this module puts a Unix
//! socket in the test's directory in front of that port (aosctl speaks only to Unix sockets)
//! and runs the host's aosctl against it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;

use crate::Vm;

/// Copies `from` into `to` until `from` ends, then closes `to`'s writing half.
fn pump(mut from: impl Read, mut to: impl Write + Shut) {
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    to.shut();
}

/// The writing half of a stream, closed.
trait Shut {
    fn shut(&mut self);
}

impl Shut for TcpStream {
    fn shut(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Shut for UnixStream {
    fn shut(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Relays every connection to `socket` to the host's `port` for as long as the test runs.
pub(crate) fn relay(socket: PathBuf, port: u16) {
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket).unwrap();
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(unix) = conn else { break };
            let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (unix2, tcp2) = (unix.try_clone().unwrap(), tcp.try_clone().unwrap());
            thread::spawn(move || pump(unix, tcp));
            thread::spawn(move || pump(tcp2, unix2));
        }
    });
}

impl Vm {
    /// The Unix socket on the host that reaches aosd in the running VM.
    pub fn api_socket(&self) -> PathBuf {
        self.path().join("api.sock")
    }

    /// Runs the host's aosctl against aosd in the VM; one that has not answered in 120 s is
    /// killed (its output then says so).
    pub fn aosctl(&self, args: &[&str]) -> Output {
        use std::time::{Duration, Instant};
        let mut child = Command::new(aos_e2e::bin("aosctl"))
            .arg("--socket")
            .arg(self.api_socket())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() && Instant::now() < end {
            thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let mut out = child.wait_with_output().unwrap();
        if Instant::now() >= end {
            out.stderr
                .extend_from_slice(b"(the harness killed aosctl after 120 s)");
        }
        out
    }

    /// Runs aosctl and returns its output; panics with its error when it fails.
    pub fn aosctl_ok(&self, args: &[&str]) -> String {
        let out = self.aosctl(args);
        assert!(
            out.status.success(),
            "aosctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Vm {
    /// Runs `cmd` in the root shell on the VM's second serial port and returns what it printed
    /// (with the terminal's echo of the command). Retries while the shell is not up yet.
    pub fn shell(&self, cmd: &str) -> String {
        use std::time::{Duration, Instant};
        let end = Instant::now() + Duration::from_secs(120);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            // Each attempt ends with its own marker; the echo of the command shows it split in
            // two quoted halves, only the output holds it whole. ^U drops a line a shell that
            // was not up yet left half read.
            let marker = format!("AOS-SH-{attempt}-END");
            let mut s = UnixStream::connect(self.path().join("shell.sock")).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(format!("\x15{cmd}\necho \"AOS-SH-{attempt}\"\"-END\"\n").as_bytes())
                .unwrap();
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&out).replace('\r', "");
                if let Some(i) = text.find(&format!("\n{marker}")) {
                    return text[..i].to_string();
                }
            }
            assert!(
                Instant::now() < end,
                "the VM's shell did not run {cmd:?} in 120 s; it printed: {}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    /// Reboots the device cleanly (sync, then reboot(2)), as a user at its shell would.
    pub fn reboot(&self) {
        self.shell("sync; (sleep 1; reboot -f) &");
    }
}
