//! Just enough WebSocket (RFC 6455) for the tests: the handshake key, frames, and a client
//! that performs the HTTP/1.1 upgrade over a plain TCP connection. SHA-1 is written out here
//! because the handshake needs it and nothing else in the workspace does.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    /// 0x1 text, 0x2 binary, 0x8 close.
    pub opcode: u8,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(sha1(format!("{key}{GUID}").as_bytes()))
}

/// Encodes a final frame; `masked` for client-to-server frames.
pub fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads one frame (masked or not).
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<WsFrame> {
    let mut head = [0u8; 2];
    reader.read_exact(&mut head).await?;
    let opcode = head[0] & 0x0f;
    let masked = head[1] & 0x80 != 0;
    let len = match head[1] & 0x7f {
        126 => u64::from(reader.read_u16().await?),
        127 => reader.read_u64().await?,
        n => u64::from(n),
    };
    if len > 16 * 1024 * 1024 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut key = [0u8; 4];
    if masked {
        reader.read_exact(&mut key).await?;
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).await?;
    if masked {
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= key[i % 4];
        }
    }
    Ok(WsFrame { opcode, payload })
}

/// A WebSocket client connection (after a successful upgrade).
pub struct WsClient<S> {
    stream: S,
    /// The `Sec-WebSocket-Accept` the server answered.
    pub accept: String,
}

/// Opens `ws://host/path` through `addr` (an edge's HTTP listener) with an HTTP/1.1 upgrade;
/// returns the status line's code and, on 101, the client.
pub async fn connect(
    addr: std::net::SocketAddr,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, Option<WsClient<TcpStream>>)> {
    upgrade(TcpStream::connect(addr).await?, host, path).await
}

/// [`connect`] over a connection the caller opened (from a source address of its choice).
pub async fn upgrade(
    mut stream: TcpStream,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, Option<WsClient<TcpStream>>)> {
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    // Read the response head byte by byte so no frame bytes are consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(std::io::Error::other("response head too long"));
        }
        head.push(stream.read_u8().await?);
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Ok((status, None));
    }
    let accept = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("sec-websocket-accept")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, Some(WsClient { stream, accept })))
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// Sends a text frame.
    pub async fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        self.stream
            .write_all(&frame(0x1, text.as_bytes(), true))
            .await?;
        self.stream.flush().await
    }

    /// Receives one frame.
    pub async fn receive(&mut self) -> std::io::Result<WsFrame> {
        read_frame(&mut self.stream).await
    }

    /// Sends a close frame.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&frame(0x8, &[], true)).await
    }
}

/// SHA-1, which the WebSocket handshake uses for its accept key.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
