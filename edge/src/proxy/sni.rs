//! TLS passthrough's first look at a connection: the visitor's ClientHello read into a buffer
//! (bounded in size and time) and its server name (SNI) parsed by a small parser that refuses
//! what it does not understand and never panics; then the connection as [`Replayed`], which
//! gives the buffered bytes back before the socket's, so whoever takes it next (the TLS
//! acceptor, or the splice to a passthrough origin) sees the stream from its first byte.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The most bytes read while looking for the server name: a ClientHello with post-quantum
/// key shares is under 2 KiB; a TLS record holds at most 16 KiB of handshake.
pub(super) const MAX_HELLO: usize = 16 * 1024 + 5;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Hello {
    /// A complete ClientHello, and the host name it asks for (lowercase), if any.
    Complete(Option<String>),
    /// So far a ClientHello: more bytes are needed.
    Partial,
    /// Not a ClientHello this parser reads (the TLS acceptor will say what is wrong).
    Other,
}

/// Reads `bytes` as the start of a TLS connection: one handshake record carrying a
/// ClientHello. A ClientHello split over several records is [`Hello::Other`] (browsers and
/// TLS libraries send it in one).
pub(super) fn parse(bytes: &[u8]) -> Hello {
    let mut record = Reader::new(bytes);
    // TLSPlaintext: type 22 (handshake), legacy version 3.x, length.
    let Some(header) = record.take(5) else {
        return partial_unless(bytes.first().is_some_and(|&b| b != 22));
    };
    if header[0] != 22 || header[1] != 3 {
        return Hello::Other;
    }
    let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if length > 16 * 1024 {
        return Hello::Other;
    }
    let Some(fragment) = record.take(length) else {
        return Hello::Partial;
    };
    let mut handshake = Reader::new(fragment);
    // Handshake: type 1 (ClientHello), 24-bit length, the body whole in this record.
    let (Some(&[1]), Some(len)) = (handshake.take(1), handshake.u24()) else {
        return Hello::Other;
    };
    let Some(body) = handshake.take(len) else {
        return Hello::Other;
    };
    match server_name(body) {
        Some(name) => Hello::Complete(name),
        None => Hello::Other,
    }
}

fn partial_unless(other: bool) -> Hello {
    if other { Hello::Other } else { Hello::Partial }
}

/// The ClientHello body's `server_name` extension's host name: `Some(None)` when it has
/// none, `None` when the body is malformed.
fn server_name(body: &[u8]) -> Option<Option<String>> {
    let mut hello = Reader::new(body);
    hello.take(2 + 32)?; // legacy_version, random
    let session_id = usize::from(hello.u8()?);
    hello.take(session_id)?;
    let suites = usize::from(hello.u16()?);
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    hello.take(compression)?;
    if hello.is_empty() {
        return Some(None); // no extensions at all
    }
    let extensions = usize::from(hello.u16()?);
    let mut extensions = Reader::new(hello.take(extensions)?);
    while !extensions.is_empty() {
        let kind = extensions.u16()?;
        let len = usize::from(extensions.u16()?);
        let data = extensions.take(len)?;
        if kind != 0 {
            continue;
        }
        // server_name: a list of (type, name); type 0 is host_name.
        let mut list = Reader::new(data);
        let list_len = usize::from(list.u16()?);
        let mut names = Reader::new(list.take(list_len)?);
        while !names.is_empty() {
            let name_type = names.u8()?;
            let len = usize::from(names.u16()?);
            let name = names.take(len)?;
            if name_type == 0 {
                let name = std::str::from_utf8(name).ok()?;
                if name.is_empty() || !name.is_ascii() {
                    return None;
                }
                return Some(Some(name.trim_end_matches('.').to_ascii_lowercase()));
            }
        }
        return Some(None);
    }
    Some(None)
}

/// A cursor over bytes that answers `None` instead of reading past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }

    fn u16(&mut self) -> Option<u16> {
        let bytes = self.take(2)?;
        Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
    }

    fn u24(&mut self) -> Option<usize> {
        let bytes = self.take(3)?;
        Some(
            bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
        )
    }
}

/// Reads from `io` until the buffered bytes hold a whole ClientHello, are something else,
/// reach [`MAX_HELLO`], the visitor stops sending, or `within` passes. The bytes read, and the
/// server name when a whole ClientHello carried one.
pub(super) async fn read_hello<I: AsyncRead + Unpin>(
    io: &mut I,
    within: Duration,
) -> (Vec<u8>, Option<String>) {
    let mut buffer = Vec::with_capacity(2048);
    let mut name = None;
    let _ = tokio::time::timeout(within, async {
        let mut chunk = [0u8; 2048];
        loop {
            match parse(&buffer) {
                Hello::Complete(found) => {
                    name = found;
                    return;
                }
                Hello::Other => return,
                Hello::Partial => {}
            }
            let room = MAX_HELLO.saturating_sub(buffer.len()).min(chunk.len());
            if room == 0 {
                return;
            }
            let Some(space) = chunk.get_mut(..room) else {
                return;
            };
            match io.read(space).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(space.get(..n).unwrap_or_default()),
            }
        }
    })
    .await;
    (buffer, name)
}

/// A connection whose first bytes were already read: they come back first, then the rest.
pub(super) struct Replayed<I> {
    head: Vec<u8>,
    at: usize,
    inner: I,
}

impl<I> Replayed<I> {
    pub(super) fn new(head: Vec<u8>, inner: I) -> Self {
        Self { head, at: 0, inner }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Replayed<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(rest) = this.head.get(this.at..)
            && !rest.is_empty()
        {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            this.at += n;
            if this.at >= this.head.len() {
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Replayed<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A real ClientHello, as rustls writes it, for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(config), server).expect("client");
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).expect("hello");
        bytes
    }

    #[test]
    fn a_real_client_hello_names_its_server() {
        let hello = client_hello("DB.Example.com");
        assert_eq!(
            parse(&hello),
            Hello::Complete(Some("db.example.com".into()))
        );
        // Every proper prefix is partial, never a wrong answer.
        for cut in 0..hello.len() {
            assert_eq!(
                parse(hello.get(..cut).expect("cut")),
                Hello::Partial,
                "{cut}"
            );
        }
    }

    #[test]
    fn a_hello_to_an_address_has_no_name_and_garbage_is_other() {
        // rustls sends no SNI for an IP address.
        assert_eq!(parse(&client_hello("127.0.0.1")), Hello::Complete(None));
        assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Hello::Other);
        assert_eq!(parse(&[22, 3, 1, 0xff, 0xff]), Hello::Other);
        assert_eq!(parse(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Hello::Other);
    }

    #[test]
    fn corrupted_hellos_never_panic() {
        let hello = client_hello("app.example.com");
        // Each byte flipped and each length cut: some answer, no panic.
        for i in 0..hello.len() {
            for value in [0u8, 1, 0x7f, 0xff] {
                let mut bytes = hello.clone();
                if let Some(b) = bytes.get_mut(i) {
                    *b = value;
                }
                let _ = parse(&bytes);
            }
        }
    }

    #[tokio::test]
    async fn a_hello_is_read_whole_then_replayed_from_its_first_byte() {
        let hello = client_hello("app.example.com");
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let sent = [hello.clone(), b"after".to_vec()].concat();
        // Sent in small pieces: the reader waits for the whole ClientHello.
        let writer = tokio::spawn(async move {
            for piece in sent.chunks(100) {
                client.write_all(piece).await.expect("write");
                tokio::task::yield_now().await;
            }
            client
        });
        let (head, name) = read_hello(&mut server, Duration::from_secs(5)).await;
        assert_eq!(name.as_deref(), Some("app.example.com"));
        let client = writer.await.expect("writer");
        drop(client);
        let mut replayed = Replayed::new(head, server);
        let mut all = Vec::new();
        replayed.read_to_end(&mut all).await.expect("read");
        assert_eq!(all, [hello, b"after".to_vec()].concat());
    }

    #[tokio::test]
    async fn a_silent_visitor_is_given_up_on_in_time() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let (head, name) = read_hello(&mut server, Duration::from_millis(50)).await;
        assert!(head.is_empty());
        assert_eq!(name, None);
    }
}
