//! The gRPC API of aosd, generated from `proto/aosd.proto`, and the connection to it over a
//! Unix socket.

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("aosd.v1");
}

pub use v1::aosd_client::AosdClient;
pub use v1::aosd_server::{Aosd, AosdServer};

/// The socket aosd listens on by default.
pub const DEFAULT_SOCKET: &str = "/run/aosd/aosd.sock";

/// Opens a client on the Unix socket at `path`.
pub async fn connect(
    path: impl AsRef<Path>,
) -> Result<AosdClient<Channel>, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_path_buf();
    // The URI is not used: every connection goes to the socket.
    let channel = Endpoint::from_static("http://aosd.local")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await?;
    Ok(AosdClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20))
}
