//! Visitor load: GETs through an edge's public listener, a fixed number or until stopped, at a
//! bounded concurrency or a steady rate. What came back is counted per status (and, with the
//! origin's help, per connector); every request that did not succeed is kept with its timing.
//!
//! A load is built, then either run to the end ([`Load::run`]) or started in the background
//! ([`Load::start`]) while the test changes something, and stopped ([`Running::stop`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use tokio::task::JoinSet;

use crate::origin::TestOrigin;

/// How many requests a load sends unless told otherwise: the bound on a load that runs until
/// stopped, however long the test takes.
pub const MAX_REQUESTS: usize = 100_000;

/// A load to send: where request `i` goes, how many, how paced, and what counts as success (a
/// 200 whose whole body arrived, and equals [`Load::expect_body`] when that is set).
pub struct Load {
    http: reqwest::Client,
    url: Arc<dyn Fn(usize) -> String + Send + Sync>,
    requests: usize,
    pace: Pace,
    expect_body: Option<String>,
    deadline: Option<Duration>,
    pause_after_failure: Duration,
    keep_outcomes: bool,
}

/// How requests are paced.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// At most this many in flight: each of as many workers sends its next request when the
    /// last one is answered.
    Concurrent(usize),
    /// One request every `1 / rate` seconds, each on its own task, however slow the answers.
    PerSecond(u64),
}

impl Load {
    /// GETs of `url`, one at a time, until stopped (at most [`MAX_REQUESTS`]).
    pub fn get(http: &reqwest::Client, url: &str) -> Self {
        let url = url.to_string();
        Self::get_each(http, move |_| url.clone())
    }

    /// GETs of `url(i)` for the `i`-th request (from 0), one at a time, until stopped (at most
    /// [`MAX_REQUESTS`]).
    pub fn get_each(
        http: &reqwest::Client,
        url: impl Fn(usize) -> String + Send + Sync + 'static,
    ) -> Self {
        Self {
            http: http.clone(),
            url: Arc::new(url),
            requests: MAX_REQUESTS,
            pace: Pace::Concurrent(1),
            expect_body: None,
            deadline: None,
            pause_after_failure: Duration::ZERO,
            keep_outcomes: false,
        }
    }

    /// Sends `count` requests in all.
    pub fn requests(mut self, count: usize) -> Self {
        self.requests = count;
        self
    }

    /// Keeps at most `workers` requests in flight (a closed loop).
    pub fn concurrency(mut self, workers: usize) -> Self {
        self.pace = Pace::Concurrent(workers.max(1));
        self
    }

    /// Starts `rate` requests a second, each on its own task (an open loop: a slow answer holds
    /// none of the next back).
    pub fn per_second(mut self, rate: u64) -> Self {
        self.pace = Pace::PerSecond(rate.max(1));
        self
    }

    /// A 200 succeeds only with this body.
    pub fn expect_body(mut self, body: &str) -> Self {
        self.expect_body = Some(body.to_string());
        self
    }

    /// Panics when a request (answer and body) takes longer than `limit`: a hang, not a
    /// failure to count.
    pub fn deadline(mut self, limit: Duration) -> Self {
        self.deadline = Some(limit);
        self
    }

    /// After a failure, the worker waits `pause` before its next request (so that a load does
    /// not spin on something that is down).
    pub fn pause_after_failure(mut self, pause: Duration) -> Self {
        self.pause_after_failure = pause;
        self
    }

    /// Keeps every request's [`Outcome`] in [`Report::outcomes`], not only the failures.
    pub fn keep_outcomes(mut self) -> Self {
        self.keep_outcomes = true;
        self
    }

    /// Sends every request and waits for the last answer.
    pub async fn run(self) -> Report {
        self.start().finish().await
    }

    /// Starts sending in the background (on the current tokio runtime).
    pub fn start(self) -> Running {
        let shared = Arc::new(Shared {
            started: Instant::now(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ok: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            tally: Mutex::default(),
        });
        let load = Arc::new(self);
        let mut tasks = JoinSet::new();
        match load.pace {
            Pace::Concurrent(workers) => {
                for _ in 0..workers.min(load.requests) {
                    let (load, shared) = (load.clone(), shared.clone());
                    tasks.spawn(async move {
                        while let Some(index) = shared.claim(load.requests) {
                            let outcome = load.send(index, shared.started).await;
                            let failed = !outcome.ok;
                            shared.record(outcome, load.keep_outcomes);
                            if failed && !load.pause_after_failure.is_zero() {
                                tokio::time::sleep(load.pause_after_failure).await;
                            }
                        }
                    });
                }
            }
            Pace::PerSecond(rate) => {
                let (load, shared) = (load.clone(), shared.clone());
                tasks.spawn(async move {
                    let mut requests = JoinSet::new();
                    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                    loop {
                        tick.tick().await;
                        let Some(index) = shared.claim(load.requests) else {
                            break;
                        };
                        let (load, shared) = (load.clone(), shared.clone());
                        requests.spawn(async move {
                            let outcome = load.send(index, shared.started).await;
                            shared.record(outcome, load.keep_outcomes);
                        });
                    }
                    while let Some(done) = requests.join_next().await {
                        propagate(done);
                    }
                });
            }
        }
        Running { shared, tasks }
    }

    /// Sends request `index` and reads its whole answer.
    async fn send(&self, index: usize, load_started: Instant) -> Outcome {
        let url = (self.url)(index);
        let started = Instant::now();
        let exchange = async {
            let response = self.http.get(&url).send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            Ok::<_, reqwest::Error>((status, headers, response.text().await))
        };
        let answer = match self.deadline {
            None => exchange.await,
            Some(limit) => tokio::time::timeout(limit, exchange)
                .await
                .unwrap_or_else(|_| panic!("GET {url} hung for {limit:?}")),
        };
        let took = started.elapsed();
        let mut outcome = Outcome {
            index,
            url,
            started,
            at: started.saturating_duration_since(load_started),
            took,
            status: None,
            headers: HeaderMap::new(),
            body: String::new(),
            error: None,
            ok: false,
        };
        match answer {
            Err(error) => outcome.error = Some(error.to_string()),
            Ok((status, headers, body)) => {
                outcome.status = Some(status);
                outcome.headers = headers;
                match body {
                    Ok(body) => outcome.body = body,
                    Err(error) => outcome.error = Some(error.to_string()),
                }
                outcome.ok = status == 200
                    && outcome.error.is_none()
                    && self
                        .expect_body
                        .as_ref()
                        .is_none_or(|expected| *expected == outcome.body);
            }
        }
        outcome
    }
}

/// A load sending in the background. Dropping it stops the load at once (requests in flight
/// are abandoned); [`Running::stop`] lets them finish.
pub struct Running {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

impl Running {
    /// Requests that succeeded so far.
    pub fn ok(&self) -> usize {
        self.shared.ok.load(Ordering::SeqCst)
    }

    /// Requests answered or failed so far.
    pub fn done(&self) -> usize {
        self.shared.done.load(Ordering::SeqCst)
    }

    /// The failures so far, in the order they ended.
    pub fn failures(&self) -> Vec<Outcome> {
        self.shared.lock().failures.clone()
    }

    /// Sends no new request, waits for those in flight, and reports.
    pub async fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.finish().await
    }

    /// Waits until every request has been sent and answered, and reports.
    pub async fn finish(mut self) -> Report {
        let mut tasks = std::mem::take(&mut self.tasks);
        while let Some(done) = tasks.join_next().await {
            propagate(done);
        }
        let mut tally = std::mem::take(&mut *self.shared.lock());
        tally.outcomes.sort_by_key(|o| o.index);
        Report {
            sent: self.done(),
            ok: self.ok(),
            by_status: tally.by_status,
            errors: tally.errors,
            failures: tally.failures,
            outcomes: tally.outcomes,
            request_ids: tally.request_ids,
        }
    }
}

/// Stops every load at once, then waits for each as [`Running::stop`] does; the reports come
/// in the order of `loads`.
pub async fn stop_all(loads: impl IntoIterator<Item = Running>) -> Vec<Report> {
    let loads: Vec<Running> = loads.into_iter().collect();
    for load in &loads {
        load.shared.stop.store(true, Ordering::SeqCst);
    }
    let mut reports = Vec::with_capacity(loads.len());
    for load in loads {
        reports.push(load.finish().await);
    }
    reports
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

/// Re-raises a request task's panic (a hang past the deadline) in the test.
fn propagate(done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done
        && error.is_panic()
    {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// What the workers share.
struct Shared {
    started: Instant,
    next: AtomicUsize,
    stop: AtomicBool,
    ok: AtomicUsize,
    done: AtomicUsize,
    tally: Mutex<Tally>,
}

impl Shared {
    /// The index of the next request to send, unless the load is stopped or all are sent.
    fn claim(&self, requests: usize) -> Option<usize> {
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        (index < requests).then_some(index)
    }

    fn record(&self, outcome: Outcome, keep: bool) {
        {
            let mut tally = self.lock();
            match outcome.status {
                Some(status) => *tally.by_status.entry(status).or_default() += 1,
                None => tally.errors += 1,
            }
            if let Some(id) = outcome.request_id() {
                tally.request_ids.push(id.to_string());
            }
            if !outcome.ok {
                tally.failures.push(outcome.clone());
            }
            if keep {
                tally.outcomes.push(outcome.clone());
            }
        }
        if outcome.ok {
            self.ok.fetch_add(1, Ordering::SeqCst);
        }
        self.done.fetch_add(1, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
struct Tally {
    by_status: BTreeMap<u16, usize>,
    errors: usize,
    failures: Vec<Outcome>,
    outcomes: Vec<Outcome>,
    request_ids: Vec<String>,
}

/// What became of one request.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Its number in the load, from 0.
    pub index: usize,
    /// The URL it went to.
    pub url: String,
    /// When it was sent.
    pub started: Instant,
    /// When it was sent, counted from the start of the load.
    pub at: Duration,
    /// How long the answer and its body took (or the failure).
    pub took: Duration,
    /// The status, unless no answer came.
    pub status: Option<u16>,
    /// The answer's headers (empty without an answer).
    pub headers: HeaderMap,
    /// The answer's body (empty when it did not arrive whole).
    pub body: String,
    /// The transport error: no answer, or a body that broke off.
    pub error: Option<String>,
    /// Whether it counts as a success.
    pub ok: bool,
}

impl Outcome {
    /// When the answer (or the failure) had arrived.
    pub fn ended(&self) -> Instant {
        self.started + self.took
    }

    /// A header of the answer, when it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The edge's `x-request-id` for this request.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} GET {}: ", self.at, self.url)?;
        if let Some(status) = self.status {
            write!(f, "status {status} {:?}", self.body)?;
        }
        if let Some(error) = &self.error {
            write!(f, " {error}")?;
        }
        write!(f, " after {:?}", self.took)
    }
}

/// What a load saw.
#[derive(Debug)]
pub struct Report {
    /// Requests sent and answered or failed.
    pub sent: usize,
    /// Requests that succeeded.
    pub ok: usize,
    /// Answers per status.
    pub by_status: BTreeMap<u16, usize>,
    /// Requests that got no answer at all.
    pub errors: usize,
    /// Every request that did not succeed, in the order they ended.
    pub failures: Vec<Outcome>,
    /// With [`Load::keep_outcomes`]: every request, in the order they were sent.
    pub outcomes: Vec<Outcome>,
    request_ids: Vec<String>,
}

impl Report {
    /// Answers with `status`.
    pub fn count(&self, status: u16) -> usize {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// How many of this load's requests each connector forwarded, as `origin` saw them
    /// (matched by the edge's request id).
    pub fn served_by(&self, origin: &TestOrigin) -> HashMap<String, usize> {
        let ours: HashSet<&str> = self.request_ids.iter().map(String::as_str).collect();
        let mut counts = HashMap::new();
        for seen in origin.requests() {
            if let (Some(id), Some(connector)) = (seen.request_id, seen.connector)
                && ours.contains(id.as_str())
            {
                *counts.entry(connector).or_default() += 1;
            }
        }
        counts
    }

    /// The failures, one a line.
    pub fn describe_failures(&self) -> String {
        self.failures
            .iter()
            .map(Outcome::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Panics, naming every failure, unless each request succeeded.
    pub fn expect_all_ok(&self) {
        assert!(
            self.failures.is_empty() && self.ok == self.sent,
            "{} of {} requests failed:\n{}",
            self.failures.len(),
            self.sent,
            self.describe_failures()
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sent, {} succeeded, {} failed (statuses {:?}, {} without an answer)",
            self.sent,
            self.ok,
            self.failures.len(),
            self.by_status,
            self.errors
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::connector::eventually;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_load_counts_statuses_and_keeps_what_failed() {
        let origin = TestOrigin::start().await;
        let http = reqwest::Client::new();
        let base = origin.url();
        let report = Load::get_each(&http, move |i| {
            if i % 5 == 0 {
                format!("{base}/nowhere")
            } else {
                format!("{base}/hello")
            }
        })
        .requests(20)
        .concurrency(4)
        .expect_body("hello from the origin")
        .keep_outcomes()
        .run()
        .await;
        assert_eq!((report.sent, report.ok), (20, 16), "{report}");
        assert_eq!((report.count(200), report.count(404)), (16, 4));
        let failed: Vec<usize> = report.failures.iter().map(|o| o.index).collect();
        assert_eq!(failed.len(), 4);
        assert!(failed.iter().all(|i| i % 5 == 0), "{failed:?}");
        assert_eq!(report.outcomes.len(), 20);
        assert!(
            report
                .outcomes
                .iter()
                .enumerate()
                .all(|(i, o)| o.index == i)
        );
        assert_eq!(origin.hits(), 20);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paced_load_spreads_its_requests_and_a_started_one_stops() {
        let origin = TestOrigin::start().await;
        let http = reqwest::Client::new();
        let url = format!("{}/hello", origin.url());
        let started = Instant::now();
        let report = Load::get(&http, &url)
            .per_second(100)
            .requests(11)
            .run()
            .await;
        report.expect_all_ok();
        assert!(started.elapsed() >= Duration::from_millis(100));

        let running = Load::get(&http, &url).concurrency(2).start();
        eventually(Duration::from_secs(10), "some answers", || async {
            (running.ok() >= 10).then_some(())
        })
        .await;
        let report = running.stop().await;
        assert!(report.sent >= 10 && report.sent < MAX_REQUESTS, "{report}");
        assert_eq!(report.ok, report.sent);
    }
}
