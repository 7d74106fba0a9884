//! A guard in front of hyper's HTTP/1.1 parser on visitor connections that refuses requests
//! framing their body two ways, with both `Content-Length` and `Transfer-Encoding` (the
//! classic request smuggling set-up). RFC 9112 §6.1 lets a server either reject such a
//! request or ignore the `Content-Length`; hyper does the latter, the edge wants the former:
//! a 400 that tells a probing client plainly that the edge will not guess.
//!
//! The guard follows the request framing of the byte stream (heads, `Content-Length` bodies,
//! chunked bodies with their trailers) so it knows where each head starts. It holds a head
//! back until it is complete; if the head carries both headers, it turns the first byte of
//! the `Content-Length` field name into NUL before hyper sees it, so that hyper's parser
//! refuses the head: hyper answers 400 in order after any pipelined responses and closes the
//! connection. Body bytes are passed through as they come (reads are cut at the body's end
//! so that the next head is always seen whole).
//!
//! Because a head is held back until it is whole, hyper's own header read timeout cannot see
//! a head trickled in before hyper started reading; the proxy's first-byte deadline, outside
//! the guard, covers that first head (`limits.rs`).
//!
//! Whenever the stream stops looking like what the guard understands (an upgrade, `CONNECT`,
//! HTTP/2's preface, a head hyper will refuse anyway, a malformed chunk), the guard steps
//! aside for the rest of the connection and hyper decides alone, as without the guard. So
//! the guard can add a refusal but never changes what hyper accepts otherwise.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest head the guard holds back; beyond it, hyper refuses the head itself (431).
const MAX_HEAD: usize = super::limits::MAX_HTTP1_BUFFER;

/// The longest chunk-size or trailer line the guard reads.
const MAX_LINE: usize = 4 * 1024;

/// How much the guard reads at once while it looks at a head or a chunk line.
const READ_CHUNK: usize = 8 * 1024;

/// Where in the request stream the guard is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At (or inside) a request head.
    Head,
    /// Inside a body of known length: this many bytes left.
    Fixed(u64),
    /// At a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many data bytes left.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// In the trailer section after the last chunk.
    Trailers,
    /// Stepped aside: everything passes.
    Off,
}

/// An HTTP/1.1 visitor connection with the guard in front of its reads.
pub(super) struct FramingGuard<I> {
    io: I,
    state: State,
    /// Bytes read from `io` and not given to hyper yet; the first `ready` are cleared. Reads
    /// go into its spare capacity, so nothing is zeroed or moved per read.
    held: BytesMut,
    ready: usize,
}

impl<I> FramingGuard<I> {
    /// Guards `io`; `enabled: false` (an HTTP/2 connection) passes everything.
    pub(super) fn new(io: I, enabled: bool) -> Self {
        Self {
            io,
            state: if enabled { State::Head } else { State::Off },
            held: BytesMut::new(),
            ready: 0,
        }
    }

    /// Advances over the held bytes that are not cleared yet, clearing what it can.
    fn process(&mut self) {
        loop {
            let pending = &self.held[self.ready..];
            if pending.is_empty() {
                return;
            }
            match self.state {
                State::Off => {
                    self.ready = self.held.len();
                    return;
                }
                State::Head => {
                    // Empty lines before a request line are allowed and skipped.
                    let blank = pending
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    if blank > 0 {
                        self.ready += blank;
                        continue;
                    }
                    let Some(end) = head_end(pending) else {
                        if pending.len() > MAX_HEAD {
                            self.state = State::Off;
                        }
                        return;
                    };
                    let start = self.ready;
                    let verdict = inspect_head(&self.held[start..start + end]);
                    if let Some(at) = verdict.spoil_at {
                        self.held[start + at] = 0;
                    }
                    self.ready += end;
                    self.state = verdict.next;
                }
                State::Fixed(left) | State::ChunkData(left) => {
                    let take = left.min(pending.len() as u64);
                    self.ready += take as usize;
                    self.state = match (self.state, left - take) {
                        (State::Fixed(_), 0) => State::Head,
                        (State::Fixed(_), rest) => State::Fixed(rest),
                        (_, 0) => State::ChunkEnd,
                        (_, rest) => State::ChunkData(rest),
                    };
                }
                State::ChunkEnd => match pending {
                    [b'\n', ..] => {
                        self.ready += 1;
                        self.state = State::ChunkSize;
                    }
                    [b'\r', b'\n', ..] => {
                        self.ready += 2;
                        self.state = State::ChunkSize;
                    }
                    [b'\r'] => return,
                    _ => self.state = State::Off,
                },
                State::ChunkSize | State::Trailers => {
                    let Some(newline) = pending.iter().position(|b| *b == b'\n') else {
                        if pending.len() > MAX_LINE {
                            self.state = State::Off;
                        }
                        return;
                    };
                    let line = trim_cr(&pending[..newline]);
                    self.state = if self.state == State::Trailers {
                        if line.is_empty() {
                            State::Head
                        } else {
                            State::Trailers
                        }
                    } else {
                        match chunk_size(line) {
                            Some(0) => State::Trailers,
                            Some(size) => State::ChunkData(size),
                            None => State::Off,
                        }
                    };
                    self.ready += newline + 1;
                }
            }
        }
    }

    /// How many bytes may be read straight into the caller's buffer (a body's remainder, or
    /// anything once the guard stepped aside); `None` when reads must go through `held`.
    fn direct_limit(&self) -> Option<u64> {
        if self.held.len() > self.ready {
            return None;
        }
        match self.state {
            State::Off => Some(u64::MAX),
            State::Fixed(left) | State::ChunkData(left) => Some(left),
            _ => None,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FramingGuard<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if this.ready > 0 {
                let n = this.ready.min(buf.remaining());
                buf.put_slice(&this.held[..n]);
                this.held.advance(n);
                this.ready -= n;
                return Poll::Ready(Ok(()));
            }
            if let Some(limit) = this.direct_limit() {
                // Straight into the caller's buffer, never past the body's end.
                let n = if limit >= buf.remaining() as u64 {
                    let before = buf.filled().len();
                    std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
                    buf.filled().len() - before
                } else {
                    let room = buf.initialize_unfilled_to(limit as usize);
                    let mut limited = ReadBuf::new(room);
                    std::task::ready!(Pin::new(&mut this.io).poll_read(cx, &mut limited))?;
                    let n = limited.filled().len();
                    buf.advance(n);
                    n
                };
                this.state = match this.state {
                    State::Fixed(left) if left == n as u64 => State::Head,
                    State::Fixed(left) => State::Fixed(left - n as u64),
                    State::ChunkData(left) if left == n as u64 => State::ChunkEnd,
                    State::ChunkData(left) => State::ChunkData(left - n as u64),
                    other => other,
                };
                return Poll::Ready(Ok(()));
            }
            this.held.reserve(READ_CHUNK);
            let read = std::task::ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut this.io),
                cx,
                &mut this.held
            ))?;
            if read == 0 {
                // EOF: hand over whatever is held and let hyper judge it.
                this.state = State::Off;
                this.ready = this.held.len();
                if this.ready == 0 {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            this.process();
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FramingGuard<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The length of the head at the start of `bytes` (through its empty line), if complete.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(newline) = bytes[at..].iter().position(|b| *b == b'\n') {
        let next = at + newline + 1;
        match &bytes[next..] {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            _ => at = next,
        }
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What to do with one complete head.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    /// Where to put a NUL so that hyper refuses the head.
    spoil_at: Option<usize>,
    /// The state after the head.
    next: State,
}

/// Reads a head's request line and framing headers and decides what follows it.
fn inspect_head(head: &[u8]) -> Verdict {
    let off = |spoil_at| Verdict {
        spoil_at,
        next: State::Off,
    };
    let mut lines = head.split(|b| *b == b'\n');
    let first = lines.next().unwrap_or_default();
    let request_line = trim_cr(first);
    let method = request_line
        .split(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    let version = request_line
        .rsplit(|b| *b == b' ')
        .next()
        .unwrap_or_default();
    if method == b"PRI"
        || method == b"CONNECT"
        || (version != b"HTTP/1.1" && version != b"HTTP/1.0")
    {
        return off(None);
    }
    // Where the current line starts in `head`.
    let mut start = first.len() + 1;
    let mut content_length: Option<(usize, Vec<&[u8]>)> = None;
    let mut transfer_encoding: Vec<&[u8]> = Vec::new();
    let mut upgrade = false;
    for raw in lines {
        let line = trim_cr(raw);
        let line_start = start;
        start += raw.len() + 1;
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = &line[colon + 1..];
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length
                .get_or_insert_with(|| (line_start, Vec::new()))
                .1
                .push(value);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding.push(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade = true;
        }
    }
    if let Some((at, _)) = &content_length
        && !transfer_encoding.is_empty()
    {
        return off(Some(*at));
    }
    if upgrade {
        return off(None);
    }
    if !transfer_encoding.is_empty() {
        let last = transfer_encoding
            .iter()
            .flat_map(|v| v.split(|b| *b == b','))
            .next_back()
            .map(|coding| coding.trim_ascii());
        return match last {
            Some(coding) if coding.eq_ignore_ascii_case(b"chunked") && version == b"HTTP/1.1" => {
                Verdict {
                    spoil_at: None,
                    next: State::ChunkSize,
                }
            }
            _ => off(None),
        };
    }
    let Some((_, values)) = content_length else {
        return Verdict {
            spoil_at: None,
            next: State::Head,
        };
    };
    let mut length = None;
    for part in values.iter().flat_map(|v| v.split(|b| *b == b',')) {
        let part = part.trim_ascii();
        let parsed = std::str::from_utf8(part)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok());
        match (parsed, length) {
            (Some(n), None) => length = Some(n),
            (Some(n), Some(m)) if n == m => {}
            _ => return off(None),
        }
    }
    match length {
        Some(0) | None => Verdict {
            spoil_at: None,
            next: State::Head,
        },
        Some(n) => Verdict {
            spoil_at: None,
            next: State::Fixed(n),
        },
    }
}

/// The size on a chunk-size line (hex digits, then optional extensions), if well-formed.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return None;
    }
    let text = std::str::from_utf8(&line[..digits]).ok()?;
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Reads `input` through the guard, delivered in pieces of `piece` bytes, with the
    /// caller reading `read` bytes at a time.
    async fn through(input: &[u8], piece: usize, read: usize) -> Vec<u8> {
        let mut builder = tokio_test_reader(input, piece);
        let mut guard = FramingGuard::new(&mut builder, true);
        let mut out = Vec::new();
        let mut buffer = vec![0u8; read];
        loop {
            let n = guard.read(&mut buffer).await.expect("read");
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buffer[..n]);
        }
    }

    /// A reader that yields `input` in pieces.
    fn tokio_test_reader(input: &[u8], piece: usize) -> Pieces {
        Pieces {
            pieces: input.chunks(piece).map(<[u8]>::to_vec).collect(),
        }
    }

    struct Pieces {
        pieces: std::collections::VecDeque<Vec<u8>>,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(mut piece) = self.pieces.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.pieces.push_front(piece.split_off(n));
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    const PIPELINE: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
        POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n\
        \r\nGET /d HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n\
        Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[tokio::test]
    async fn well_framed_requests_pass_unchanged_however_they_are_cut() {
        for piece in [1, 2, 7, 64, 4096] {
            for read in [1, 3, 16, 8192] {
                assert_eq!(
                    through(PIPELINE, piece, read).await,
                    PIPELINE,
                    "pieces of {piece}, reads of {read}"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_head_with_both_framings_is_spoiled_however_it_is_cut() {
        let smuggling = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\n\r\n0\r\n\r\n";
        let mut expected = smuggling.to_vec();
        let at = smuggling
            .windows(14)
            .position(|w| w == b"content-length")
            .expect("present");
        expected[at] = 0;
        for piece in [1, 5, 4096] {
            assert_eq!(through(smuggling, piece, 8192).await, expected);
        }
    }

    #[test]
    fn heads_are_judged_by_their_framing() {
        let next = |head: &[u8]| inspect_head(head).next;
        assert_eq!(
            next(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"),
            State::Head,
            "no body"
        );
        assert_eq!(
            next(b"POST / HTTP/1.1\r\nContent-Length: 7, 7\r\n\r\n"),
            State::Fixed(7)
        );
        assert_eq!(
            next(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 8\r\n\r\n"),
            State::Off,
            "conflicting lengths: hyper refuses"
        );
        assert_eq!(
            next(b"POST / HTTP/1.1\nTransfer-Encoding: gzip, chunked\n\n"),
            State::ChunkSize
        );
        assert_eq!(
            next(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            State::Off
        );
        assert_eq!(next(b"PRI * HTTP/2.0\r\n\r\n"), State::Off);
        assert_eq!(next(b"CONNECT h:443 HTTP/1.1\r\n\r\n"), State::Off);
        let both = inspect_head(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(both.spoil_at, Some(17));
    }

    #[test]
    fn chunk_sizes_are_hex_with_optional_extensions() {
        assert_eq!(chunk_size(b"1f"), Some(31));
        assert_eq!(chunk_size(b"A;name=value"), Some(10));
        assert_eq!(chunk_size(b"0 "), Some(0));
        assert_eq!(chunk_size(b"zz"), None);
        assert_eq!(chunk_size(b"-5"), None);
        assert_eq!(chunk_size(b"10000000000000000"), None);
        assert_eq!(chunk_size(b"5 x"), None);
    }

    #[test]
    fn the_head_ends_at_its_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nrest"), Some(21));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }
}
