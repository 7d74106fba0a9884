//! The access log: one JSON line per visitor request, written when its response ends, to
//! `--access-log FILE` (`-`: standard error; reopened on SIGHUP, for logrotate) and to every
//! viewer following `GET /v1/requests?follow=true`.
//!
//! Lines are only built while someone reads them (a file, or a follower), so an edge without
//! either pays one atomic load per request. The file is written by a thread of its own behind a
//! bounded queue: a slow disk never holds a request; a full queue drops the line and counts it
//! (`postern_edge_access_log_dropped_total`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::body::{BoxBody, BoxError};
use crate::metrics::Metrics;

/// Lines waiting for the writer thread before new ones are dropped.
const QUEUE: usize = 16_384;

/// Lines a follower may fall behind before it misses some (it is told how many).
const FOLLOW_BUFFER: usize = 4_096;

/// The lines `GET /v1/requests` without `follow` answers with, newest last.
pub(crate) const RECENT: usize = 1_000;

/// How long the writer waits for more lines before it flushes what it wrote.
const FLUSH_AFTER: Duration = Duration::from_millis(200);

/// Where `--access-log` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Destination {
    /// Standard error (`--access-log -`).
    Stderr,
    /// A file, appended to, reopened on SIGHUP.
    File(PathBuf),
}

impl Destination {
    /// `-` is standard error; anything else a file path.
    pub(crate) fn parse(value: &str) -> Self {
        if value == "-" {
            Destination::Stderr
        } else {
            Destination::File(PathBuf::from(value))
        }
    }
}

/// The access log of one edge node; shared by every worker and the API.
pub(crate) struct AccessLog {
    file: Option<FileSink>,
    followers: broadcast::Sender<Arc<Line>>,
    recent: Mutex<VecDeque<Arc<Line>>>,
    metrics: Arc<Metrics>,
    /// Cancelled when the edge shuts down: followers' streams end.
    closing: CancellationToken,
}

/// One written line, with the hostname it is for (to filter on).
#[derive(Debug)]
pub(crate) struct Line {
    /// The entry's `host`.
    pub(crate) host: String,
    /// The JSON object, without the newline.
    pub(crate) text: String,
}

/// The writer thread's end of the queue.
struct FileSink {
    /// A line to write, or `None` to wake the writer (to reopen the file).
    lines: SyncSender<Option<Arc<Line>>>,
    reopen: Arc<AtomicBool>,
}

impl AccessLog {
    /// An access log writing to `destination` (when set) and to its followers. Opens the file
    /// now, so a path that cannot be written to stops the start with a clear error.
    /// Followers' streams end when `closing` is cancelled.
    pub(crate) fn open(
        destination: Option<&Destination>,
        metrics: Arc<Metrics>,
        closing: CancellationToken,
    ) -> io::Result<Self> {
        let file = match destination {
            None => None,
            Some(destination) => Some(FileSink::start(destination.clone())?),
        };
        let (followers, _) = broadcast::channel(FOLLOW_BUFFER);
        Ok(Self {
            file,
            followers,
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            metrics,
            closing,
        })
    }

    /// An access log nobody reads yet (tests; an edge without `--access-log` is the same).
    #[cfg(test)]
    pub(crate) fn off(metrics: Arc<Metrics>) -> Self {
        Self::open(None, metrics, CancellationToken::new())
            .unwrap_or_else(|_| unreachable!("no file to open"))
    }

    /// Whether a line would be read: a file is written, or a viewer follows.
    pub(crate) fn is_on(&self) -> bool {
        self.file.is_some() || self.followers.receiver_count() > 0
    }

    /// Asks the writer to reopen the file before its next line (SIGHUP).
    pub(crate) fn reopen(&self) {
        if let Some(file) = &self.file {
            file.reopen.store(true, Ordering::Relaxed);
            // Wakes the writer so that the file is reopened even when no request comes.
            let _ = file.lines.try_send(None);
        }
    }

    /// A receiver of every line from now on.
    pub(crate) fn follow(&self) -> broadcast::Receiver<Arc<Line>> {
        self.followers.subscribe()
    }

    /// Cancelled when the edge shuts down.
    pub(crate) fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// The last lines written (at most [`RECENT`]), oldest first.
    pub(crate) fn recent(&self) -> Vec<Arc<Line>> {
        match self.recent.lock() {
            Ok(recent) => recent.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    /// Writes `entry` as one line.
    pub(crate) fn write(&self, entry: &Entry) {
        let line = match serde_json::to_string(entry) {
            Ok(text) => Arc::new(Line {
                host: entry.host.clone(),
                text,
            }),
            Err(error) => {
                tracing::warn!(%error, "cannot write an access log line");
                return;
            }
        };
        {
            let mut recent = match self.recent.lock() {
                Ok(recent) => recent,
                Err(poisoned) => poisoned.into_inner(),
            };
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(line.clone());
        }
        if self.followers.receiver_count() > 0 {
            let _ = self.followers.send(line.clone());
        }
        if let Some(file) = &self.file {
            match file.lines.try_send(Some(line)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.metrics
                        .inc("postern_edge_access_log_dropped_total", &[]);
                }
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }
}

impl FileSink {
    fn start(destination: Destination) -> io::Result<Self> {
        let mut writer = Writer::open(&destination)?;
        let (lines, queue) = mpsc::sync_channel::<Option<Arc<Line>>>(QUEUE);
        let reopen = Arc::new(AtomicBool::new(false));
        let reopen_flag = reopen.clone();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                loop {
                    let line = match queue.recv_timeout(FLUSH_AFTER) {
                        Ok(line) => Some(line),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => break,
                    };
                    if reopen_flag.swap(false, Ordering::Relaxed) {
                        writer.reopen(&destination);
                    }
                    match line {
                        Some(Some(line)) => writer.line(&line.text),
                        Some(None) => {}
                        None => writer.flush(),
                    }
                }
                writer.flush();
            })?;
        Ok(Self { lines, reopen })
    }
}

/// The writer thread's open file (or standard error).
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Whether the last write failed (logged once, until a write succeeds).
    failing: bool,
}

impl Writer {
    fn open(destination: &Destination) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, open(destination)?),
            failing: false,
        })
    }

    fn line(&mut self, line: &str) {
        let written = self
            .out
            .write_all(line.as_bytes())
            .and_then(|()| self.out.write_all(b"\n"));
        self.note(written);
    }

    fn flush(&mut self) {
        let flushed = self.out.flush();
        self.note(flushed);
    }

    fn reopen(&mut self, destination: &Destination) {
        self.flush();
        match open(destination) {
            Ok(out) => {
                self.out = BufWriter::with_capacity(64 * 1024, out);
                tracing::info!("reopened the access log");
            }
            Err(error) => {
                tracing::error!(%error, "cannot reopen the access log; writing to the old file");
            }
        }
    }

    fn note(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) => self.failing = false,
            Err(error) if !self.failing => {
                self.failing = true;
                tracing::error!(%error, "cannot write the access log");
            }
            Err(_) => {}
        }
    }
}

fn open(destination: &Destination) -> io::Result<Box<dyn Write + Send>> {
    Ok(match destination {
        Destination::Stderr => Box::new(io::stderr()),
        Destination::File(path) => Box::new(append(path)?),
    })
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One request, as its line says it.
#[derive(Debug, Serialize)]
pub(crate) struct Entry {
    /// The id the visitor got in `x-request-id`.
    pub(crate) request_id: String,
    /// When the request arrived (RFC 3339, UTC, milliseconds).
    pub(crate) time: String,
    pub(crate) client_ip: IpAddr,
    pub(crate) method: String,
    /// The declared hostname, or the `Host` the request named when none matched.
    pub(crate) host: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    /// Body bytes received from the visitor.
    pub(crate) bytes_in: u64,
    /// Body bytes sent to the visitor.
    pub(crate) bytes_out: u64,
    /// From the request's arrival to the end of its response body.
    pub(crate) duration_ms: f64,
    /// The weighted route taken (its selector), for hostnames with routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tunnel_id: Option<String>,
    /// The edge's id of the tunnel connection that carried it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connection_id: Option<String>,
    /// The connector process at the other end of it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connector: Option<String>,
    /// `allow` or `deny` when the hostname has policies; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) decision: Option<&'static str>,
    /// The policy that refused the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) policy: Option<String>,
    /// Why a policy refused it, or why the edge answered by itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// Who it was from, when a `basic_auth` or `oidc` policy let it through: the email (or
    /// the user name), never a password, cookie or token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user: Option<String>,
}

/// The time `at` in RFC 3339, UTC, to the millisecond.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at);
    let millis = at.millisecond();
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    match at.format(&format) {
        Ok(text) => format!("{text}.{millis:03}Z"),
        Err(_) => String::new(),
    }
}

/// A response body that counts what it sends and writes the request's line when it ends (or
/// the visitor goes away).
pub(crate) struct Logged {
    inner: BoxBody,
    pending: Option<Pending>,
}

/// A line waiting for the end of its response.
struct Pending {
    log: Arc<AccessLog>,
    entry: Entry,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
}

impl Logged {
    /// Wraps `inner`; `entry` is written once it ends, with the bytes it sent, the bytes
    /// `bytes_in` counted by then and the time since `started`.
    pub(crate) fn new(
        inner: BoxBody,
        log: Arc<AccessLog>,
        entry: Entry,
        started: Instant,
        bytes_in: Arc<AtomicU64>,
    ) -> Self {
        Self {
            inner,
            pending: Some(Pending {
                log,
                entry,
                started,
                bytes_in,
            }),
        }
    }

    fn finish(&mut self) {
        if let Some(mut pending) = self.pending.take() {
            pending.entry.bytes_in = pending.bytes_in.load(Ordering::Relaxed);
            pending.entry.duration_ms = pending.started.elapsed().as_secs_f64() * 1000.0;
            pending.log.write(&pending.entry);
        }
    }
}

impl Body for Logged {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(pending)) = (frame.data_ref(), self.pending.as_mut()) {
                    pending.entry.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn entry() -> Entry {
        Entry {
            request_id: "r".into(),
            time: rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            method: "GET".into(),
            host: "app.example.com".into(),
            path: "/".into(),
            status: 200,
            bytes_in: 0,
            bytes_out: 0,
            duration_ms: 0.0,
            route: None,
            tunnel_id: None,
            connection_id: None,
            connector: None,
            decision: None,
            policy: None,
            reason: None,
            user: None,
        }
    }

    #[test]
    fn time_is_rfc3339_in_utc_with_milliseconds() {
        assert_eq!(
            rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(1_500)),
            "1970-01-01T00:00:01.500Z"
        );
    }

    #[tokio::test]
    async fn a_line_is_written_when_the_body_ends_with_the_bytes_it_sent() {
        let log = Arc::new(AccessLog::off(Arc::new(Metrics::default())));
        let mut follower = log.follow();
        assert!(log.is_on(), "a follower turns the log on");
        let bytes_in = Arc::new(AtomicU64::new(7));
        let body = crate::body::full(Bytes::from_static(b"hello"));
        let logged = Logged::new(body, log.clone(), entry(), Instant::now(), bytes_in);
        assert!(follower.try_recv().is_err(), "nothing before the body ends");
        let collected = logged.collect().await.expect("body").to_bytes();
        assert_eq!(collected, "hello");
        let line = follower.try_recv().expect("a line");
        assert_eq!(line.host, "app.example.com");
        let value: serde_json::Value = serde_json::from_str(&line.text).expect("json");
        assert_eq!(value["bytes_out"], 5);
        assert_eq!(value["bytes_in"], 7);
        assert_eq!(value["status"], 200);
        assert!(value.get("route").is_none());
        assert_eq!(log.recent().len(), 1);
    }

    #[test]
    fn the_recent_lines_are_bounded() {
        let log = AccessLog::off(Arc::new(Metrics::default()));
        for _ in 0..RECENT + 5 {
            log.write(&entry());
        }
        assert_eq!(log.recent().len(), RECENT);
    }

    #[test]
    fn lines_go_to_the_file_and_a_reopen_starts_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("access.log");
        let log = AccessLog::open(
            Some(&Destination::File(path.clone())),
            Arc::new(Metrics::default()),
            CancellationToken::new(),
        )
        .expect("open");
        log.write(&entry());
        let rotated = dir.path().join("access.log.1");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
            < 1
        {
            assert!(Instant::now() < deadline, "the line never reached the file");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::fs::rename(&path, &rotated).expect("rotate");
        log.reopen();
        log.write(&entry());
        while std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .count()
            < 1
        {
            assert!(Instant::now() < deadline, "the reopened file got no line");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(
            std::fs::read_to_string(&rotated)
                .expect("rotated")
                .lines()
                .count(),
            1
        );
    }
}
