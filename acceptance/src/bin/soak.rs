//! `soak`: mixed traffic through a real edge and a real connector for a given duration, then a
//! report: operations and errors by kind, latency percentiles, and the resident memory of the
//! edge and the connector after warm-up and at the end (with samples in between). Not part of
//! CI; run it on a quiet machine:
//!
//! ```text
//! cargo run --release -p acceptance --bin soak -- --duration 10m
//! ```
//!
//! Options: `--duration D` (default 60s), `--warmup D` (default 30s, included in the
//! duration), `--workers N` (default 16), `--sample D` (RSS sample interval, default 30s),
//! `--only KIND` (repeatable: run only `small-get`, `post-echo`, `download`, `websocket` or
//! `policy-denied`, to see which one a figure comes from). Durations are written as everywhere
//! in Postern (`postern_schema::duration`): `90s`, `1m30s`, `10m`.
//!
//! The mix, per operation: 40% `GET /hello`; 20% `POST /echo` with 16 KiB, checked byte for
//! byte; 10% `GET /download` of 1 MiB, checked by length; 10% a WebSocket session of five
//! echoed messages; 20% a request a policy refuses (403 expected).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use acceptance::fixture::{connections, token, tunnel_for};
use acceptance::process::rss;
use acceptance::visitor::edge_http_client;
use acceptance::{ConnectorProcess, EdgeProcess, TestOrigin, websocket};
use anyhow::{Context, bail};
use postern_schema::api::{HostnameSpec, PolicySpec};
use postern_schema::duration;

const HOST: &str = "soak.example.com";
const GUARDED: &str = "guarded.example.com";

/// Command-line options.
#[derive(Debug, Clone)]
struct Options {
    duration: Duration,
    warmup: Duration,
    workers: usize,
    sample: Duration,
    only: Vec<Kind>,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        duration: Duration::from_secs(60),
        warmup: Duration::from_secs(30),
        workers: 16,
        sample: Duration::from_secs(30),
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => options.duration = duration::parse(&value()?)?,
            "--warmup" => options.warmup = duration::parse(&value()?)?,
            "--sample" => options.sample = duration::parse(&value()?)?,
            "--only" => {
                let name = value()?;
                let kind = Kind::ALL
                    .into_iter()
                    .find(|k| k.name() == name)
                    .with_context(|| format!("--only: no kind {name:?}"))?;
                options.only.push(kind);
            }
            "--workers" => {
                options.workers = value()?.parse().context("--workers needs a number")?
            }
            "--help" | "-h" => {
                println!(
                    "soak [--duration 60s] [--warmup 30s] [--workers 16] [--sample 30s] [--only KIND]: mixed traffic through a real edge and connector, then requests, errors, latency percentiles and RSS"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if options.warmup >= options.duration {
        bail!("--warmup must be shorter than --duration");
    }
    Ok(options)
}

/// The kinds of operation in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    SmallGet,
    PostEcho,
    Download,
    WebSocket,
    PolicyDenied,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::SmallGet,
        Kind::PostEcho,
        Kind::Download,
        Kind::WebSocket,
        Kind::PolicyDenied,
    ];

    /// The name `--only` takes.
    fn name(self) -> &'static str {
        match self {
            Kind::SmallGet => "small-get",
            Kind::PostEcho => "post-echo",
            Kind::Download => "download",
            Kind::WebSocket => "websocket",
            Kind::PolicyDenied => "policy-denied",
        }
    }

    /// Picks a kind for operation number `i` (a fixed interleaving of the mix).
    fn for_op(i: u64) -> Kind {
        match i % 10 {
            0 | 3 | 6 | 8 => Kind::SmallGet,
            1 | 5 => Kind::PostEcho,
            2 => Kind::Download,
            4 => Kind::WebSocket,
            _ => Kind::PolicyDenied,
        }
    }
}

/// What the workers measured.
#[derive(Default)]
struct Tally {
    /// Latencies in microseconds, by kind.
    latencies: BTreeMap<Kind, Vec<u32>>,
    /// Errors, by kind and description.
    errors: BTreeMap<(Kind, String), u64>,
}

struct Target {
    http: reqwest::Client,
    guarded: reqwest::Client,
    port: u16,
    addr: std::net::SocketAddr,
    payload: Vec<u8>,
}

/// Runs one operation; `Err` says what went wrong.
async fn run_op(target: &Target, kind: Kind) -> Result<(), String> {
    let url = |host: &str, path: &str| format!("http://{host}:{}{path}", target.port);
    match kind {
        Kind::SmallGet => {
            let response = target
                .http
                .get(url(HOST, "/hello"))
                .send()
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = response.status().as_u16();
            let body = response.text().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 || body != "hello from the origin" {
                return Err(format!("status {status}"));
            }
        }
        Kind::PostEcho => {
            let response = target
                .http
                .post(url(HOST, "/echo"))
                .body(target.payload.clone())
                .send()
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 || body.as_ref() != target.payload.as_slice() {
                return Err(format!("status {status} or a different echo"));
            }
        }
        Kind::Download => {
            let response = target
                .http
                .get(url(HOST, "/download?bytes=1048576"))
                .send()
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = response.status().as_u16();
            let body = response.bytes().await.map_err(|e| format!("body: {e}"))?;
            if status != 200 || body.len() != 1 << 20 {
                return Err(format!("status {status}, {} bytes", body.len()));
            }
        }
        Kind::WebSocket => {
            let (status, ws) = websocket::connect(target.addr, HOST, "/ws")
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let mut ws = ws.ok_or_else(|| format!("upgrade answered {status}"))?;
            for i in 0..5 {
                let text = format!("soak message {i}");
                ws.send_text(&text)
                    .await
                    .map_err(|e| format!("send: {e}"))?;
                let frame = tokio::time::timeout(Duration::from_secs(10), ws.receive())
                    .await
                    .map_err(|_| "no echo within 10 s".to_string())?
                    .map_err(|e| format!("receive: {e}"))?;
                if frame.payload != text.as_bytes() {
                    return Err("a different echo".into());
                }
            }
            let _ = ws.close().await;
        }
        Kind::PolicyDenied => {
            let response = target
                .guarded
                .get(url(GUARDED, "/admin/secrets"))
                .send()
                .await
                .map_err(|e| format!("transport: {e}"))?;
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            if status != 403 {
                return Err(format!("status {status}, expected 403"));
            }
        }
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    Duration::from_micros(u64::from(sorted[rank.min(sorted.len() - 1)]))
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    match soak().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the soak; `Ok(false)` when it saw errors or memory grew more than 10%.
async fn soak() -> anyhow::Result<bool> {
    let options = parse_options()?;
    println!(
        "soak: {:?} of {} by {} workers ({:?} warm-up); building and starting the edge and a connector",
        options.duration,
        if options.only.is_empty() {
            "mixed traffic".to_string()
        } else {
            options
                .only
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(", ")
        },
        options.workers,
        options.warmup
    );
    let edge = EdgeProcess::start();
    let client = edge.client();
    let origin = TestOrigin::start().await;
    let tunnel = tunnel_for(&client, "soak", HOST, &origin.url()).await;
    let policy = client
        .create_policy(&serde_json::from_value::<PolicySpec>(serde_json::json!({
            "name": "only-hello",
            "allow_paths": ["/hello"],
        }))?)
        .await
        .context("creating the policy")?;
    client
        .create_hostname(&HostnameSpec {
            tls_passthrough: None,
            hostname: GUARDED.into(),
            service: origin.url(),
            tunnel_id: Some(tunnel.id),
            routes: None,
            policy_ids: vec![policy.id],
            paths: Vec::new(),
            origin: None,
        })
        .await
        .context("creating the guarded hostname")?;
    let connector = ConnectorProcess::run(&token(&tunnel), 2, &[]);
    connections(&client, tunnel.id, 2).await;
    let (edge_pid, connector_pid) = (edge.pid(), connector.pid());

    let target = Arc::new(Target {
        http: edge_http_client(&edge, HOST),
        guarded: edge_http_client(&edge, GUARDED),
        port: edge.addrs.http.port(),
        addr: edge.addrs.http,
        payload: (0..16 * 1024u32).map(|i| (i % 251) as u8).collect(),
    });
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..options.workers {
        let (target, stop, measuring) = (target.clone(), stop.clone(), measuring.clone());
        let only = options.only.clone();
        workers.spawn(async move {
            let mut tally = Tally::default();
            let mut i = worker as u64;
            while !stop.load(Ordering::Relaxed) {
                let kind = Kind::for_op(i);
                i += 1;
                if !only.is_empty() && !only.contains(&kind) {
                    continue;
                }
                let began = Instant::now();
                let result = match tokio::time::timeout(
                    Duration::from_secs(30),
                    run_op(&target, kind),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err("no answer within 30 s".into()),
                };
                if !measuring.load(Ordering::Relaxed) {
                    continue;
                }
                let micros = began.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                tally.latencies.entry(kind).or_default().push(micros);
                if let Err(error) = result {
                    *tally.errors.entry((kind, error)).or_default() += 1;
                }
            }
            tally
        });
    }

    tokio::time::sleep(options.warmup).await;
    measuring.store(true, Ordering::Relaxed);
    let baseline = (rss(edge_pid), rss(connector_pid));
    println!(
        "after warm-up: edge RSS {}, connector RSS {}",
        mib(baseline.0),
        mib(baseline.1)
    );
    let mut samples = vec![(options.warmup, baseline)];
    while started.elapsed() < options.duration {
        let left = options.duration.saturating_sub(started.elapsed());
        tokio::time::sleep(left.min(options.sample)).await;
        let sample = (rss(edge_pid), rss(connector_pid));
        println!(
            "{:>5}s: edge RSS {}, connector RSS {}",
            started.elapsed().as_secs(),
            mib(sample.0),
            mib(sample.1)
        );
        samples.push((started.elapsed(), sample));
    }
    let end = (rss(edge_pid), rss(connector_pid));
    stop.store(true, Ordering::Relaxed);
    let measured_for = started.elapsed().saturating_sub(options.warmup);

    let mut total = Tally::default();
    while let Some(result) = workers.join_next().await {
        let tally = result.context("a worker failed")?;
        for (kind, mut latencies) in tally.latencies {
            total
                .latencies
                .entry(kind)
                .or_default()
                .append(&mut latencies);
        }
        for (key, count) in tally.errors {
            *total.errors.entry(key).or_default() += count;
        }
    }
    let mut all: Vec<u32> = Vec::new();
    let mut operations = 0usize;
    println!(
        "\n{:<14} {:>9} {:>7} {:>10} {:>10} {:>10}",
        "operation", "count", "errors", "p50", "p99", "max"
    );
    for (kind, latencies) in &mut total.latencies {
        latencies.sort_unstable();
        operations += latencies.len();
        all.extend_from_slice(latencies);
        let errors: u64 = total
            .errors
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|(_, n)| n)
            .sum();
        println!(
            "{:<14} {:>9} {:>7} {:>10.1?} {:>10.1?} {:>10.1?}",
            format!("{kind:?}"),
            latencies.len(),
            errors,
            percentile(latencies, 50.0),
            percentile(latencies, 99.0),
            percentile(latencies, 100.0)
        );
    }
    all.sort_unstable();
    let errors: u64 = total.errors.values().sum();
    for ((kind, error), count) in &total.errors {
        println!("error: {kind:?}: {error} ({count}x)");
    }
    let growth = |start: u64, end: u64| (end as f64 - start as f64) * 100.0 / start.max(1) as f64;
    let (edge_growth, connector_growth) = (growth(baseline.0, end.0), growth(baseline.1, end.1));
    println!(
        "\nsoak: {operations} operations in {measured_for:.0?} after a {:?} warm-up ({:.0}/s), {errors} errors; p99 latency {:.1?} (all kinds), p50 {:.1?}",
        options.warmup,
        operations as f64 / measured_for.as_secs_f64().max(1.0),
        percentile(&all, 99.0),
        percentile(&all, 50.0)
    );
    println!(
        "RSS after warm-up -> end: edge {} -> {} ({edge_growth:+.1}%), connector {} -> {} ({connector_growth:+.1}%); peak edge {}, peak connector {}",
        mib(baseline.0),
        mib(end.0),
        mib(baseline.1),
        mib(end.1),
        mib(samples.iter().map(|(_, s)| s.0).max().unwrap_or(0)),
        mib(samples.iter().map(|(_, s)| s.1).max().unwrap_or(0)),
    );
    let within = edge_growth <= 10.0 && connector_growth <= 10.0;
    println!(
        "RSS at the end is {}within 10% of RSS after warm-up",
        if within { "" } else { "NOT " }
    );
    drop(connector);
    drop(edge);
    Ok(errors == 0 && within)
}
