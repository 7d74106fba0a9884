//! One benchmark run: start the origin, Postern and the peers, then for each repetition run
//! every workload on every target in turn (the starting target rotates from one repetition
//! to the next, so no target always runs first), and finally the provider workload.

use std::path::PathBuf;
use std::time::Duration;

use super::load::{self, Endpoint, LoadResult};
use super::origin::OriginProcess;
use super::peers::{self, BORE, Peer, RATHOLE};
use super::postern::{self, Postern};
use super::procs::{self, Sampler};
use super::provider;
use super::report::{DIRECT, Machine, POSTERN_HTTP, Report, Samples, Settings, TargetStatus};

/// How long to let sockets and processes settle between two timed runs.
const SETTLE: Duration = Duration::from_millis(300);

/// What the command line asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// A smoke run of a few seconds instead of the full run.
    pub quick: bool,
    /// Repetitions (default: 1 quick, 3 full).
    pub repetitions: Option<usize>,
    /// Only these targets (all when empty).
    pub targets: Vec<String>,
    /// Which workloads, as letters (`abcdef`).
    pub workloads: String,
    /// Where rathole and bore are installed.
    pub cache: PathBuf,
    /// Whether missing peers may be installed.
    pub install: bool,
    /// (f)'s hostname count (default: 10 quick, 200 full).
    pub hostnames: Option<usize>,
    /// Extra environment for the edge and the connector (tuning experiments).
    pub postern_env: Vec<(String, String)>,
}

/// A target and how to reach it.
struct Target {
    status: TargetStatus,
    endpoint: Option<Endpoint>,
    pids: Vec<u32>,
}

const GENERATOR: &str = "the benchmark's own Rust generator (hyper 1 HTTP/1.1 client, tokio multi-thread runtime in the benchmark process; rustls for HTTPS): closed loop, each connection sends its next request when the previous response has been read to the end; latency is measured from writing the request to the last body byte (for (b) from connect) and kept in an HDR histogram (hdrhistogram crate, 3 significant digits); requests per second = successful requests / wall time. The origin is a separate process (hyper HTTP/1.1, 100-byte body for (a)–(c)). The generator, the origin and the proxy share the same 2 cores, so every figure includes the generator's own cost.";

/// Runs the benchmark and returns its report.
pub async fn run(options: Options) -> anyhow::Result<Report> {
    let mut machine = Machine::read();
    if machine.load_at_start > 0.5 {
        eprintln!(
            "bench: the load average is {:.2}: other work is running and the numbers will be noisy",
            machine.load_at_start
        );
    }
    let quick = options.quick;
    let settings = Settings {
        mode: if quick { "quick" } else { "full" }.into(),
        repetitions: options
            .repetitions
            .unwrap_or(if quick { 1 } else { 3 })
            .max(1),
        a_connections: 64,
        a_seconds: if quick { 0.5 } else { 10.0 },
        b_workers: 64,
        b_seconds: if quick { 0.5 } else { 5.0 },
        c_seconds: if quick { 0.5 } else { 5.0 },
        d_bytes: if quick { 16 << 20 } else { 256 << 20 },
        f_hostnames: options.hostnames.unwrap_or(if quick { 10 } else { 200 }),
    };
    let wanted =
        |name: &str| options.targets.is_empty() || options.targets.iter().any(|t| t == name);
    let workload = |letter: char| options.workloads.contains(letter);

    let origin = OriginProcess::start()?;
    let direct = Endpoint {
        addr: origin.addr,
        host: postern::HOSTNAME.into(),
        tls: None,
    };
    let mut targets = vec![Target {
        status: TargetStatus {
            name: DIRECT.into(),
            description: "the origin hit directly".into(),
            skipped: None,
        },
        endpoint: Some(direct),
        pids: Vec::new(),
    }];

    let postern = if wanted(POSTERN_HTTP) || wanted("postern-https") || workload('f') {
        eprintln!("bench: starting Postern (release builds of postern-edge and postern)");
        match postern::start(origin.url(), options.postern_env.clone()).await {
            Ok(postern) => Some(postern),
            Err(error) => {
                eprintln!("bench: Postern did not start: {error}");
                None
            }
        }
    } else {
        None
    };
    let postern_skip = postern
        .as_ref()
        .map_or(Some("Postern did not start".to_string()), |_| None);
    for (name, description, https) in [
        (
            POSTERN_HTTP,
            "visitor → edge public HTTP → h2 stream over the TLS 1.3 tunnel → connector → origin (HTTP/1.1, pooled)",
            false,
        ),
        (
            "postern-https",
            "the same through the edge's public HTTPS listener (TLS 1.3, HTTP/1.1)",
            true,
        ),
    ] {
        if !wanted(name) {
            continue;
        }
        targets.push(Target {
            status: TargetStatus {
                name: name.into(),
                description: description.into(),
                skipped: postern_skip.clone(),
            },
            endpoint: postern.as_ref().map(|p| {
                if https {
                    p.https.clone()
                } else {
                    p.http.clone()
                }
            }),
            pids: postern.as_ref().map(Postern::pids).unwrap_or_default(),
        });
    }

    let mut running_peers: Vec<Peer> = Vec::new();
    let peer_list: [(&str, &str); 4] = [
        (
            "rathole-tcp",
            "rathole 0.5.0 (crates.io), TCP transport: one data channel per visitor connection",
        ),
        (
            "rathole-tls",
            "rathole 0.5.0 (crates.io), TLS transport (native-tls/OpenSSL): one TLS data channel per visitor connection",
        ),
        (
            "bore",
            "bore-cli 0.6.0 (crates.io): one tunnel connection per visitor connection, no encryption",
        ),
        (
            "nginx",
            "nginx (Debian package) as a plain reverse proxy: upstream keep-alive, no buffering, no access log",
        ),
    ];
    for (name, description) in peer_list {
        if !wanted(name) {
            continue;
        }
        eprintln!("bench: starting {name}");
        let started = match name {
            "rathole-tcp" | "rathole-tls" => {
                match peers::installed(RATHOLE, &options.cache, options.install) {
                    Ok(bin) => peers::rathole(&bin, origin.addr, name == "rathole-tls").await,
                    Err(error) => Err(error),
                }
            }
            "bore" => match peers::installed(BORE, &options.cache, options.install) {
                Ok(bin) => peers::bore(&bin, origin.addr).await,
                Err(error) => Err(error),
            },
            _ => peers::nginx(origin.addr).await,
        };
        let (endpoint, pids, skipped) = match started {
            Ok(peer) => {
                let found = (Some(peer.endpoint.clone()), peer.pids(), None);
                running_peers.push(peer);
                found
            }
            Err(reason) => {
                eprintln!("bench: {name} skipped: {reason}");
                (None, Vec::new(), Some(reason))
            }
        };
        targets.push(Target {
            status: TargetStatus {
                name: name.into(),
                description: description.into(),
                skipped,
            },
            endpoint,
            pids,
        });
    }

    let mut samples = Samples::default();
    let live: Vec<&Target> = targets.iter().filter(|t| t.endpoint.is_some()).collect();
    // Before any traffic: the processes as started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    record_idle(&mut samples, "cold_idle_rss_mib", &live);
    for rep in 0..settings.repetitions {
        eprintln!("bench: repetition {} of {}", rep + 1, settings.repetitions);
        let order: Vec<&Target> = (0..live.len())
            .map(|i| live[(i + rep) % live.len()])
            .collect();
        if workload('a') {
            for target in &order {
                let endpoint = endpoint_of(target);
                let (result, cpu, peak) = measure(&target.pids, || {
                    load::keep_alive(
                        endpoint,
                        "/small",
                        settings.a_connections,
                        Duration::from_secs_f64(settings.a_seconds),
                    )
                })
                .await;
                record_load(&mut samples, "a", target, &result, cpu, peak);
            }
        }
        if workload('b') {
            for target in &order {
                let endpoint = endpoint_of(target);
                let (result, cpu, peak) = measure(&target.pids, || {
                    load::new_connection(
                        endpoint,
                        "/small",
                        settings.b_workers,
                        Duration::from_secs_f64(settings.b_seconds),
                    )
                })
                .await;
                record_load(&mut samples, "b", target, &result, cpu, peak);
            }
        }
        if workload('c') {
            for target in &order {
                let endpoint = endpoint_of(target);
                let (result, cpu, peak) = measure(&target.pids, || {
                    load::keep_alive(
                        endpoint,
                        "/small",
                        1,
                        Duration::from_secs_f64(settings.c_seconds),
                    )
                })
                .await;
                record_load(&mut samples, "c", target, &result, cpu, peak);
            }
        }
        if workload('d') {
            for target in &order {
                let endpoint = endpoint_of(target);
                for (name, up) in [("d_down", false), ("d_up", true)] {
                    let (transfer, cpu, peak) = measure(&target.pids, || async {
                        if up {
                            load::upload(endpoint, settings.d_bytes).await
                        } else {
                            load::download(endpoint, settings.d_bytes).await
                        }
                    })
                    .await;
                    let t = target.status.name.as_str();
                    if transfer.bytes == 0 {
                        eprintln!("bench: {name} through {t} failed");
                        continue;
                    }
                    samples.push(name, "mib_per_s", t, transfer.mib_per_s());
                    if !target.pids.is_empty() {
                        let gib = transfer.bytes as f64 / (1u64 << 30) as f64;
                        samples.push(name, "cpu_s_per_gib", t, cpu / gib);
                        samples.push(name, "peak_rss_mib", t, mib(peak));
                    }
                }
            }
        }
        // Idle again after the repetition's traffic: growth from one repetition to the next
        // would be a leak.
        tokio::time::sleep(Duration::from_secs(1)).await;
        record_idle(&mut samples, "idle_rss_mib", &live);
    }

    let mut notes = Vec::new();
    if workload('f') {
        match &postern {
            Some(postern) => {
                eprintln!(
                    "bench: (f) terraform with {} hostnames",
                    settings.f_hostnames
                );
                provider_workload(postern, &settings, &mut samples, &mut notes).await;
            }
            None => notes.push("(f) not measured: Postern did not start".into()),
        }
    }

    machine.load_at_end = super::report::load_average();
    let mut report = Report {
        date: now_utc(),
        machine,
        settings,
        generator: GENERATOR.into(),
        targets: targets.into_iter().map(|t| t.status).collect(),
        series: samples.into_series(),
        checks: Vec::new(),
        notes,
    };
    report.check_targets();
    drop(running_peers);
    drop(postern);
    drop(origin);
    Ok(report)
}

fn endpoint_of(target: &Target) -> &Endpoint {
    // Only targets with an endpoint are in the run order.
    target
        .endpoint
        .as_ref()
        .expect("a live target has an endpoint")
}

/// Runs `work` while sampling the target's processes: its result, the CPU seconds they used,
/// and their peak resident memory.
async fn measure<F, Fut, T>(pids: &[u32], work: F) -> (T, f64, u64)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    tokio::time::sleep(SETTLE).await;
    let pids: Vec<u32> = pids.iter().flat_map(|p| procs::tree(*p)).collect();
    let sampler = Sampler::start(pids.clone());
    let before = procs::total_cpu(&pids);
    let result = work().await;
    let cpu = procs::total_cpu(&pids) - before;
    let peak = sampler.stop();
    (result, cpu, peak)
}

fn record_idle(samples: &mut Samples, metric: &str, targets: &[&Target]) {
    for target in targets.iter().filter(|t| !t.pids.is_empty()) {
        let pids: Vec<u32> = target.pids.iter().flat_map(|p| procs::tree(*p)).collect();
        samples.push(
            "e",
            metric,
            &target.status.name,
            mib(procs::total_rss(&pids)),
        );
    }
}

fn record_load(
    samples: &mut Samples,
    workload: &str,
    target: &Target,
    result: &LoadResult,
    cpu: f64,
    peak: u64,
) {
    let t = target.status.name.as_str();
    eprintln!(
        "bench: ({workload}) {t}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, {} errors",
        result.rate(),
        result.quantile_us(0.5),
        result.quantile_us(0.99),
        result.errors
    );
    if result.requests == 0 {
        return;
    }
    samples.push(workload, "req_per_s", t, result.rate());
    samples.push(workload, "p50_us", t, result.quantile_us(0.5));
    samples.push(workload, "p99_us", t, result.quantile_us(0.99));
    samples.push(workload, "errors", t, result.errors as f64);
    if !target.pids.is_empty() {
        samples.push(
            workload,
            "cpu_us_per_req",
            t,
            cpu * 1e6 / result.requests as f64,
        );
        samples.push(workload, "peak_rss_mib", t, mib(peak));
    }
}

async fn provider_workload(
    postern: &Postern,
    settings: &Settings,
    samples: &mut Samples,
    notes: &mut Vec<String>,
) {
    for rep in 0..settings.repetitions {
        let n = settings.f_hostnames;
        // Terraform and the harness block and panic on failure: a blocking scope catches both.
        let result = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                provider::sample(&postern.edge, n, rep)
            }))
        });
        match result {
            Ok(sample) => {
                samples.push("f", "apply_s", "terraform_data", sample.data_apply);
                samples.push("f", "plan_s", "terraform_data", sample.data_plan);
                samples.push("f", "apply_s", "terraform_data_shape", sample.shape_apply);
                samples.push("f", "plan_s", "terraform_data_shape", sample.shape_plan);
                samples.push("f", "apply_s", "postern", sample.postern_apply);
                samples.push("f", "plan_s", "postern", sample.postern_plan);
                samples.push(
                    "f",
                    "api_creates_per_s",
                    "postern",
                    sample.api_creates_per_s,
                );
                eprintln!(
                    "bench: (f) apply {:.2} s vs {:.2} s terraform_data; plan {:.2} s vs {:.2} s",
                    sample.postern_apply, sample.data_apply, sample.postern_plan, sample.data_plan
                );
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                let first: String = message.lines().take(20).collect::<Vec<_>>().join("\n");
                notes.push(format!("(f) failed: {first}"));
                eprintln!("bench: (f) failed: {message}");
                return;
            }
        }
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn now_utc() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
