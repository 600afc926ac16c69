//! A test cloud: a WebSocket server over TLS on loopback that asks for a client certificate
//! signed by its CA (both made by the test kit), records every message a node sends, sends
//! what a test asks, and can drop the connection or go away and come back on the same port.
//! Tests are synchronous; the cloud runs on its own runtime.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aos_testkit::certs::{Pair, Pki};
use futures::{SinkExt, StreamExt};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Ws;

#[derive(Default)]
struct Shared {
    received: Vec<Value>,
    to_node: Option<mpsc::UnboundedSender<Ws>>,
    sessions: usize,
}

/// A cloud for one test.
pub struct TestCloud {
    rt: tokio::runtime::Runtime,
    port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Mutex<Shared>>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// The CA of the server's certificate (and of the client's).
    pub ca_file: std::path::PathBuf,
    /// The node's client certificate.
    pub client: Pair,
}

fn acceptor(pki: &Pki, server: &Pair) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca_file).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_file_iter(&server.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&server.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl TestCloud {
    /// A cloud listening on a free loopback port; certificates go to `dir`.
    pub fn start(dir: &Path) -> TestCloud {
        let pki = Pki::new(dir).unwrap();
        let server = pki.server("cloud").unwrap();
        let client = pki.client("node").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cloud = TestCloud {
            rt,
            port: crate::node::free_port(),
            acceptor: acceptor(&pki, &server),
            shared: Arc::default(),
            server: None,
            ca_file: pki.ca_file.clone(),
            client,
        };
        cloud.resume();
        cloud
    }

    /// The URL a node connects to.
    pub fn url(&self) -> String {
        format!("wss://localhost:{}/", self.port)
    }

    /// aosd's `[cloud]` section for this cloud, without the registry of its items.
    pub fn section(&self) -> String {
        format!(
            "[cloud]\nenabled = true\nurl = \"{}\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nheartbeat = \"1s\"\nmonitoring = \"2s\"\nbackoff_base = \"200ms\"\nbackoff_max = \"1s\"\n",
            self.url(),
            self.ca_file.display(),
            self.client.cert.display(),
            self.client.key.display()
        )
    }

    /// aosd's `[cloud]` section for this cloud, with items from `registry`.
    pub fn config(&self, registry: &str) -> String {
        format!("{}registry = \"{registry}\"\n", self.section())
    }

    /// Listens again (after [`TestCloud::go_away`]).
    pub fn resume(&mut self) {
        let listener = self
            .rt
            .block_on(tokio::net::TcpListener::bind(("127.0.0.1", self.port)))
            .unwrap();
        let (acceptor, shared) = (self.acceptor.clone(), self.shared.clone());
        self.server = Some(self.rt.spawn(async move {
            let mut sessions = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, shared) = (acceptor.clone(), shared.clone());
                sessions.spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(ws) = tokio_tungstenite::accept_async(tls).await else {
                        return;
                    };
                    session(ws, shared).await;
                });
            }
        }));
    }

    /// Stops listening and drops the node's connection: the cloud is away.
    pub fn go_away(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = self.rt.block_on(s);
        }
        self.shared.lock().unwrap().to_node = None;
    }

    /// Closes the node's connection (the node reconnects).
    pub fn drop_connection(&self) {
        if let Some(tx) = self.shared.lock().unwrap().to_node.take() {
            let _ = tx.send(Ws::Close(None));
        }
    }

    /// How many sessions nodes have opened.
    pub fn sessions(&self) -> usize {
        self.shared.lock().unwrap().sessions
    }

    /// Sends `text` to the node, waiting up to `secs` for a connection.
    pub fn send(&self, text: &str, secs: u64) {
        let start = Instant::now();
        loop {
            if let Some(tx) = &self.shared.lock().unwrap().to_node {
                if tx.send(Ws::Text(text.to_string().into())).is_ok() {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "no node connected within {secs} s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Value> {
        self.shared.lock().unwrap().received.clone()
    }

    /// Waits up to `secs` for a message received after the first `skip` that `f` accepts.
    pub fn wait(&self, skip: usize, secs: u64, f: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let got = self.received();
            if let Some(m) = got.iter().skip(skip).find(|m| f(m)) {
                return m.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "no such message in {secs} s; received: {got:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestCloud {
    fn drop(&mut self) {
        self.go_away();
    }
}

async fn session<S>(ws: tokio_tungstenite::WebSocketStream<S>, shared: Arc<Mutex<Shared>>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut s = shared.lock().unwrap();
        s.sessions += 1;
        s.to_node = Some(tx);
    }
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(m) => {
                    let close = matches!(m, Ws::Close(_));
                    if sink.send(m).await.is_err() || close {
                        break;
                    }
                }
                None => break,
            },
            m = stream.next() => match m {
                Some(Ok(Ws::Text(t))) => {
                    let v = serde_json::from_str(t.as_str()).unwrap_or(Value::String(t.to_string()));
                    shared.lock().unwrap().received.push(v);
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
    }
}
