//! Probes of an instance in a network namespace of its own: the socket is made inside that
//! namespace (by a thread that joins it and then ends, so no thread of aosd stays there) and
//! then used from aosd like any other; HTTP over it through hyper.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// A TCP connection to `host:port` made inside the namespace `ns` (e.g. /proc/PID/ns/net).
pub async fn connect(
    ns: &Path,
    host: &str,
    port: u16,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let addr: SocketAddr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{host} has no address"),
        )
    })?;
    let ns: PathBuf = ns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("aos-probe-netns".into())
        .spawn(move || {
            let made = (|| -> std::io::Result<std::net::TcpStream> {
                let f = std::fs::File::open(&ns)?;
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(std::io::Error::from)?;
                let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })();
            let _ = tx.send(made);
        })?;
    let stream = rx
        .await
        .map_err(|_| std::io::Error::other("the probe thread ended early"))??;
    tokio::net::TcpStream::from_std(stream)
}

/// `GET path` over `stream`; the status code.
pub async fn get(stream: tokio::net::TcpStream, host: &str, path: &str) -> Result<u16, String> {
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string());
    driver.abort();
    Ok(res?.status().as_u16())
}
