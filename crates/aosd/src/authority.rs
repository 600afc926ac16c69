//! Any `:authority` on the local socket. gRPC clients of other languages name a Unix socket's
//! path as the authority (grpc-python sends `tmp%2Faosd.sock`, grpc-java the raw path), which
//! the HTTP/2 layer under tonic refuses as malformed, so those clients get a protocol error.
//! Every accepted connection therefore passes through a relay that reads the client's HTTP/2
//! frames, decodes each header block (HPACK, with the client's table), puts `localhost` in place
//! of an authority that is not a valid URI authority, and encodes the block again for the
//! server (with a table of its own); every other frame and everything the server sends pass
//! unchanged. The relay hands tonic the peer credentials of the real socket, so the write
//! checks of `auth` see the real caller.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::{Connected, UdsConnectInfo};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The largest frame every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's floor).
const MAX_FRAME: usize = 16_384;
/// Most bytes of one header block the relay collects (HEADERS and its CONTINUATIONs).
const MAX_BLOCK: usize = 1 << 20;

/// The server's side of a relayed connection, carrying the real peer's credentials.
pub struct Relayed {
    io: DuplexStream,
    info: UdsConnectInfo,
}

impl Connected for Relayed {
    type ConnectInfo = UdsConnectInfo;

    fn connect_info(&self) -> UdsConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for Relayed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Relayed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Starts relaying an accepted connection; returns the side to serve.
pub fn relay(client: UnixStream) -> Relayed {
    let info = client.connect_info();
    let (server_side, relay_side) = tokio::io::duplex(64 << 10);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = tokio::io::split(relay_side);
    tokio::spawn(async move {
        let up = async {
            if let Err(e) = rewrite(&mut from_client, &mut to_server).await {
                tracing::debug!(error = %e, "API connection ended");
            }
            let _ = to_server.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
            let _ = to_client.shutdown().await;
        };
        tokio::join!(up, down);
    });
    Relayed {
        io: server_side,
        info: UdsConnectInfo {
            peer_addr: info.peer_addr.clone().map(|a| Arc::new((*a).clone())),
            peer_cred: info.peer_cred,
        },
    }
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Copies the client's bytes, re-encoding header blocks with a valid authority.
async fn rewrite<R, W>(from: &mut R, to: &mut W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut preface = [0u8; PREFACE.len()];
    from.read_exact(&mut preface).await?;
    to.write_all(&preface).await?;
    let mut decoder = loona_hpack::Decoder::new();
    let mut encoder = loona_hpack::Encoder::new();
    // An open header block: (HEADERS flags, stream, priority fields, fragments so far).
    let mut open: Option<(u8, u32, Vec<u8>, Vec<u8>)> = None;
    loop {
        let mut head = [0u8; 9];
        match from.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        from.read_exact(&mut payload).await?;
        match (kind, open.take()) {
            (HEADERS, None) => {
                let mut body = payload.as_slice();
                let pad = if flags & PADDED != 0 {
                    let (&p, rest) = body.split_first().ok_or_else(|| bad("empty HEADERS"))?;
                    body = rest;
                    p as usize
                } else {
                    0
                };
                body = body
                    .get(
                        ..body
                            .len()
                            .checked_sub(pad)
                            .ok_or_else(|| bad("bad padding"))?,
                    )
                    .unwrap_or_default();
                let priority = if flags & PRIORITY != 0 {
                    let (p, rest) = body
                        .split_at_checked(5)
                        .ok_or_else(|| bad("bad priority"))?;
                    body = rest;
                    p.to_vec()
                } else {
                    Vec::new()
                };
                open = Some((flags, stream, priority, body.to_vec()));
            }
            (CONTINUATION, Some((f, s, p, mut block))) if s == stream => {
                block.extend_from_slice(&payload);
                open = Some((f, s, p, block));
            }
            (_, Some(_)) => return Err(bad("a header block was interrupted")),
            _ => {
                to.write_all(&head).await?;
                to.write_all(&payload).await?;
                continue;
            }
        }
        let Some((f, s, priority, block)) = open.take() else {
            continue;
        };
        if block.len() > MAX_BLOCK {
            return Err(bad("header block too large"));
        }
        if flags & END_HEADERS == 0 {
            open = Some((f, s, priority, block));
            continue;
        }
        let headers = decoder
            .decode(&block)
            .map_err(|e| bad(format!("undecodable header block: {e:?}")))?;
        let fixed = headers.iter().map(|(n, v)| {
            let v: &[u8] = if n == b":authority" && http::uri::Authority::try_from(&v[..]).is_err()
            {
                b"localhost"
            } else {
                v
            };
            (n.as_slice(), v)
        });
        let encoded = encoder.encode(fixed);
        write_block(to, f, s, &priority, &encoded).await?;
        to.flush().await?;
    }
}

/// Writes a header block as HEADERS (keeping END_STREAM and the priority, without padding)
/// and as many CONTINUATIONs as the frame size needs.
async fn write_block<W: AsyncWrite + Unpin>(
    to: &mut W,
    flags: u8,
    stream: u32,
    priority: &[u8],
    block: &[u8],
) -> std::io::Result<()> {
    let first_room = MAX_FRAME - priority.len();
    let (first, mut rest) = block.split_at(block.len().min(first_room));
    let keep = flags & (0x1 | PRIORITY);
    let end = if rest.is_empty() { END_HEADERS } else { 0 };
    frame(to, HEADERS, keep | end, stream, &[priority, first].concat()).await?;
    while !rest.is_empty() {
        let (chunk, more) = rest.split_at(rest.len().min(MAX_FRAME));
        let end = if more.is_empty() { END_HEADERS } else { 0 };
        frame(to, CONTINUATION, end, stream, chunk).await?;
        rest = more;
    }
    Ok(())
}

async fn frame<W: AsyncWrite + Unpin>(
    to: &mut W,
    kind: u8,
    flags: u8,
    stream: u32,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut head = [0u8; 9];
    head[..3].copy_from_slice(&len[1..]);
    head[3] = kind;
    head[4] = flags;
    head[5..].copy_from_slice(&stream.to_be_bytes());
    to.write_all(&head).await?;
    to.write_all(payload).await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn relayed(input: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        rewrite(&mut input.as_slice(), &mut out).await.unwrap();
        out
    }

    fn headers_frame(block: &[u8], flags: u8) -> Vec<u8> {
        let mut f = Vec::new();
        let len = (block.len() as u32).to_be_bytes();
        f.extend_from_slice(&len[1..]);
        f.extend_from_slice(&[HEADERS, flags, 0, 0, 0, 1]);
        f.extend_from_slice(block);
        f
    }

    fn decoded_headers(out: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let body = &out[PREFACE.len()..];
        let len = u32::from_be_bytes([0, body[0], body[1], body[2]]) as usize;
        assert_eq!(body[3], HEADERS);
        assert_ne!(body[4] & END_HEADERS, 0);
        loona_hpack::Decoder::new()
            .decode(&body[9..9 + len])
            .unwrap()
    }

    #[tokio::test]
    async fn a_socket_path_authority_becomes_localhost_and_the_rest_stays() {
        let mut enc = loona_hpack::Encoder::new();
        let headers: Vec<(&[u8], &[u8])> = vec![
            (b":method", b"POST"),
            (b":path", b"/aosd.v1.Aosd/Health"),
            (b":authority", b"tmp%2Fa1%2Fs.sock"),
            (b"te", b"trailers"),
        ];
        let block = enc.encode(headers.clone());
        // Padded, in two frames: a HEADERS and a CONTINUATION.
        let mut padded = vec![3u8];
        padded.extend_from_slice(&block[..4]);
        padded.extend_from_slice(&[0, 0, 0]);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(&padded, PADDED));
        let mut cont = headers_frame(&block[4..], END_HEADERS);
        cont[3] = CONTINUATION;
        input.extend(cont);
        // A DATA frame passes as it is.
        let data = [0, 0, 2, 0, 1, 0, 0, 0, 1, 7, 7];
        input.extend_from_slice(&data);
        let out = relayed(input).await;
        let got = decoded_headers(&out);
        assert_eq!(got[2], (b":authority".to_vec(), b"localhost".to_vec()));
        assert_eq!(got[1].1, b"/aosd.v1.Aosd/Health");
        assert!(out.ends_with(&data));
    }

    #[tokio::test]
    async fn a_valid_authority_is_kept() {
        let block =
            loona_hpack::Encoder::new().encode(vec![(&b":authority"[..], &b"localhost:50051"[..])]);
        let mut input = PREFACE.to_vec();
        input.extend(headers_frame(&block, END_HEADERS | 0x1));
        let got = decoded_headers(&relayed(input).await);
        assert_eq!(got[0].1, b"localhost:50051");
    }
}
