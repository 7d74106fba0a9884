//! Raw wire for the hostile-input tests: HTTP/1.1 requests written byte for byte (so a test can
//! send what no well-behaved client would), and HTTP/2 frames built and read by hand (so a test
//! can break the rules the `h2` crate enforces for its users).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// What a server answered to raw bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawAnswer {
    /// The status of the first response, if one came.
    pub status: Option<u16>,
    /// Every status line that came, in order (pipelined responses).
    pub statuses: Vec<u16>,
    /// Did the server close the connection (EOF or reset) within the wait?
    pub closed: bool,
    /// Everything received, lossily decoded.
    pub text: String,
}

/// Writes `bytes`, then reads until the server closes the connection or `wait` passes.
pub async fn exchange<S>(stream: &mut S, bytes: &[u8], wait: Duration) -> RawAnswer
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let write_failed = stream.write_all(bytes).await.is_err() || stream.flush().await.is_err();
    let mut received = Vec::new();
    let mut closed = write_failed;
    let deadline = tokio::time::Instant::now() + wait;
    let mut buffer = [0u8; 16 * 1024];
    while !closed {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed = true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let statuses = status_lines(&text);
    RawAnswer {
        status: statuses.first().copied(),
        statuses,
        closed,
        text,
    }
}

/// The codes of every `HTTP/1.x NNN` status line in `text`.
fn status_lines(text: &str) -> Vec<u16> {
    text.split("\r\n")
        .filter_map(|line| {
            let rest = line
                .strip_prefix("HTTP/1.1 ")
                .or_else(|| line.strip_prefix("HTTP/1.0 "))?;
            rest.get(..3)?.parse().ok()
        })
        .collect()
}

/// HTTP/2 frame types used by the tests.
pub mod frame_type {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// HEADERS.
    pub const HEADERS: u8 = 0x1;
    /// RST_STREAM.
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x4;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE.
    pub const WINDOW_UPDATE: u8 = 0x8;
}

/// The client connection preface.
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One HTTP/2 frame on the wire.
pub fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A HEADERS frame (END_HEADERS, and END_STREAM when `end_stream`) for `GET path` on
/// `authority` over `http`, HPACK-encoded without the dynamic table.
pub fn h2_get(stream: u32, authority: &str, path: &str, end_stream: bool) -> Vec<u8> {
    let mut block = vec![
        0x82, // :method GET (static index 2)
        0x86, // :scheme http (static index 6)
    ];
    literal(&mut block, 4, path); // :path, name from static index 4
    literal(&mut block, 1, authority); // :authority, name from static index 1
    let flags = 0x4 | if end_stream { 0x1 } else { 0 };
    h2_frame(frame_type::HEADERS, flags, stream, &block)
}

/// Appends a literal header field without indexing, its name from the static table.
fn literal(block: &mut Vec<u8>, name_index: u8, value: &str) {
    block.push(name_index & 0x0f);
    hpack_length(block, value.len());
    block.extend_from_slice(value.as_bytes());
}

/// An HPACK string length (7-bit prefix, not Huffman-coded).
fn hpack_length(block: &mut Vec<u8>, len: usize) {
    if len < 127 {
        block.push(len as u8);
        return;
    }
    block.push(127);
    let mut rest = len - 127;
    while rest >= 128 {
        block.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    block.push(rest as u8);
}

/// A RST_STREAM frame with `code`.
pub fn h2_reset(stream: u32, code: u32) -> Vec<u8> {
    h2_frame(frame_type::RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A frame read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Frame {
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream id.
    pub stream: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl H2Frame {
    /// The error code of a RST_STREAM or GOAWAY frame.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            frame_type::RST_STREAM => 0,
            frame_type::GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    /// A SETTINGS frame's value for `id`.
    pub fn setting(&self, id: u16) -> Option<u32> {
        if self.kind != frame_type::SETTINGS {
            return None;
        }
        self.payload.chunks_exact(6).find_map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]) == id)
                .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        })
    }
}

/// Reads one frame (at most 1 MiB of payload).
pub async fn read_h2_frame<R: AsyncRead + Unpin>(reader: &mut R) -> std::io::Result<H2Frame> {
    let mut head = [0u8; 9];
    reader.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    if len > 1 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(H2Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// The `:status` of a response header block whose first field is `:status`, as servers write
/// it: an indexed static entry (200, 204, 206, 304, 400, 404, 500) or a literal with the
/// `:status` name from the static table and a value that is plain or Huffman-coded digits.
pub fn h2_status(block: &[u8]) -> Option<u16> {
    const STATIC: [(u8, u16); 7] = [
        (8, 200),
        (9, 204),
        (10, 206),
        (11, 304),
        (12, 400),
        (13, 404),
        (14, 500),
    ];
    let first = *block.first()?;
    if first & 0x80 != 0 {
        let index = first & 0x7f;
        return STATIC.iter().find(|(i, _)| *i == index).map(|(_, s)| *s);
    }
    let name_index = if first & 0x40 != 0 {
        first & 0x3f
    } else {
        first & 0x0f
    };
    if !(8..=14).contains(&name_index) {
        return None;
    }
    let len_byte = *block.get(1)?;
    let len = usize::from(len_byte & 0x7f);
    let value = block.get(2..2 + len)?;
    let text = if len_byte & 0x80 != 0 {
        huffman_digits(value)?
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    text.parse().ok()
}

/// Decodes a Huffman-coded (RFC 7541 appendix B) string of decimal digits.
fn huffman_digits(bytes: &[u8]) -> Option<String> {
    // '0'..'2' are the 5-bit codes 0..2; '3'..'9' the 6-bit codes 0x19..0x1f.
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |i| (byte >> i) & 1))
        .collect();
    let mut out = String::new();
    let mut at = 0;
    while at + 5 <= bits.len() {
        let five = bits[at..at + 5].iter().fold(0u8, |acc, b| acc << 1 | b);
        if five <= 2 {
            out.push(char::from(b'0' + five));
            at += 5;
            continue;
        }
        if at + 6 <= bits.len() {
            let six = bits[at..at + 6].iter().fold(0u8, |acc, b| acc << 1 | b);
            if (0x19..=0x1f).contains(&six) {
                out.push(char::from(b'3' + (six - 0x19)));
                at += 6;
                continue;
            }
        }
        // Anything else must be the padding: all ones, shorter than a byte.
        return bits[at..].iter().all(|b| *b == 1).then_some(out);
    }
    bits[at..].iter().all(|b| *b == 1).then_some(out)
}

/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
/// SETTINGS_MAX_HEADER_LIST_SIZE.
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;
/// REFUSED_STREAM.
pub const REFUSED_STREAM: u32 = 0x7;
/// CANCEL.
pub const CANCEL: u32 = 0x8;
/// ENHANCE_YOUR_CALM.
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_layout_of_rfc_9113() {
        assert_eq!(
            h2_frame(frame_type::PING, 0x1, 0, &[1, 2, 3, 4, 5, 6, 7, 8]),
            [0, 0, 8, 6, 1, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(h2_reset(3, CANCEL), [0, 0, 4, 3, 0, 0, 0, 0, 3, 0, 0, 0, 8]);
        let mut block = Vec::new();
        hpack_length(&mut block, 127 + 130);
        assert_eq!(block, [127, 0x82, 0x01]);
    }

    #[test]
    fn statuses_are_read_from_indexed_plain_and_huffman_fields() {
        assert_eq!(h2_status(&[0x88]), Some(200));
        assert_eq!(h2_status(&[0x48, 3, b'4', b'3', b'1']), Some(431));
        // "431" Huffman-coded: 011010 011001 00001 + padding 1111111.
        assert_eq!(h2_status(&[0x48, 0x83, 0x69, 0x90, 0xff]), Some(431));
        assert_eq!(h2_status(&[0x00]), None);
    }

    #[test]
    fn status_lines_are_found_in_pipelined_answers() {
        assert_eq!(
            status_lines(
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 400 Bad Request\r\n\r\n"
            ),
            [200, 400]
        );
    }
}
