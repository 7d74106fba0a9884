//! The benchmark's results: every sample kept (JSON), summarised as median and min–max, ratios
//! against the direct path, the targets checked, and the Markdown tables printed.

use std::fmt::Write;

use serde::Serialize;

/// The target every ratio is taken against.
pub const DIRECT: &str = "direct";

/// The Postern target the targets are about.
pub const POSTERN_HTTP: &str = "postern-http";

/// The tunnel peers (one tunnel connection per visitor connection).
pub const TUNNEL_PEERS: [&str; 3] = ["rathole-tcp", "rathole-tls", "bore"];

/// One measured quantity of one target in one workload, once per repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    /// `a`, `b`, `c`, `d_down`, `d_up`, `e`, `f`.
    pub workload: String,
    /// What is measured (`req_per_s`, `p50_us`, `mib_per_s`, …).
    pub metric: String,
    /// The target (`direct`, `postern-http`, …).
    pub target: String,
    /// One value per repetition.
    pub samples: Vec<f64>,
    /// Their median.
    pub median: f64,
    /// Their minimum.
    pub min: f64,
    /// Their maximum.
    pub max: f64,
}

/// A target: measured, or skipped with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct TargetStatus {
    /// Its name in the tables.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Why it was not measured.
    pub skipped: Option<String>,
}

/// The machine the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// `/proc/cpuinfo`'s model name.
    pub cpu: String,
    /// The kernel release.
    pub kernel: String,
    /// The 1-minute load average when the run started.
    pub load_at_start: f64,
    /// The 1-minute load average when the run ended.
    pub load_at_end: f64,
}

impl Machine {
    /// Reads `/proc`.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kb: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            cpu,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            load_at_start: load_average(),
            load_at_end: 0.0,
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The settings of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// `quick` or `full`.
    pub mode: String,
    /// Repetitions of every workload on every target.
    pub repetitions: usize,
    /// (a) connections.
    pub a_connections: usize,
    /// (a) seconds per run.
    pub a_seconds: f64,
    /// (b) concurrent workers.
    pub b_workers: usize,
    /// (b) seconds per run.
    pub b_seconds: f64,
    /// (c) seconds per run.
    pub c_seconds: f64,
    /// (d) bytes per transfer.
    pub d_bytes: u64,
    /// (f) hostnames.
    pub f_hostnames: usize,
}

/// One of the targets, checked.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The number for it.
    pub number: u8,
    /// The goal, in words.
    pub goal: String,
    /// What was measured.
    pub measured: String,
    /// Met, not met, or not measured (`None`).
    pub met: Option<bool>,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it ran (UTC, RFC 3339).
    pub date: String,
    /// Where.
    pub machine: Machine,
    /// How.
    pub settings: Settings,
    /// The load generator, in words.
    pub generator: String,
    /// The targets.
    pub targets: Vec<TargetStatus>,
    /// Every measured series.
    pub series: Vec<Series>,
    /// The targets.
    pub checks: Vec<Check>,
    /// Failures that are not a skipped target (for example a failed (f)).
    pub notes: Vec<String>,
}

/// Samples collected while the benchmark runs.
#[derive(Debug, Default)]
pub struct Samples {
    series: Vec<Series>,
}

impl Samples {
    /// Adds one repetition's value.
    pub fn push(&mut self, workload: &str, metric: &str, target: &str, value: f64) {
        if !value.is_finite() {
            return;
        }
        let found = self
            .series
            .iter_mut()
            .find(|s| s.workload == workload && s.metric == metric && s.target == target);
        let series = match found {
            Some(series) => series,
            None => {
                self.series.push(Series {
                    workload: workload.into(),
                    metric: metric.into(),
                    target: target.into(),
                    samples: Vec::new(),
                    median: 0.0,
                    min: 0.0,
                    max: 0.0,
                });
                let last = self.series.len() - 1;
                &mut self.series[last]
            }
        };
        series.samples.push(value);
        let mut sorted = series.samples.clone();
        sorted.sort_by(f64::total_cmp);
        series.min = sorted[0];
        series.max = sorted[sorted.len() - 1];
        series.median = median(&sorted);
    }

    /// The collected series.
    pub fn into_series(self) -> Vec<Series> {
        self.series
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

impl Report {
    /// The series of `target` in `workload` for `metric`.
    pub fn find(&self, workload: &str, metric: &str, target: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.workload == workload && s.metric == metric && s.target == target)
    }

    fn median(&self, workload: &str, metric: &str, target: &str) -> Option<f64> {
        self.find(workload, metric, target).map(|s| s.median)
    }

    /// `target`'s median over the direct path's median.
    pub fn ratio(&self, workload: &str, metric: &str, target: &str) -> Option<f64> {
        let direct = self.median(workload, metric, DIRECT)?;
        let value = self.median(workload, metric, target)?;
        (direct > 0.0).then(|| value / direct)
    }

    /// Fills in [`Report::checks`] from the series.
    pub fn check_targets(&mut self) {
        let mut checks = Vec::new();
        let ratio_a = self.ratio("a", "req_per_s", POSTERN_HTTP);
        let rathole_tls = self.ratio("a", "req_per_s", "rathole-tls");
        checks.push(Check {
            number: 1,
            goal:
                "small keep-alive (a) through the edge's HTTP ≥ 0.30× direct and above rathole-TLS"
                    .into(),
            measured: format!(
                "{} × direct; rathole-tls {}",
                fmt_ratio(ratio_a),
                fmt_ratio(rathole_tls)
            ),
            met: ratio_a.map(|r| r >= 0.30 && rathole_tls.is_none_or(|t| r > t)),
        });
        let ratio_b = self.ratio("b", "req_per_s", POSTERN_HTTP);
        let best_peer = TUNNEL_PEERS
            .iter()
            .filter_map(|p| self.ratio("b", "req_per_s", p))
            .fold(None, |best: Option<f64>, r| {
                Some(best.map_or(r, |b| b.max(r)))
            });
        checks.push(Check {
            number: 2,
            goal: "new connection per request (b) ≥ 0.5× direct, ahead of every tunnel peer".into(),
            measured: format!(
                "{} × direct; best tunnel peer {}",
                fmt_ratio(ratio_b),
                fmt_ratio(best_peer)
            ),
            met: ratio_b.map(|r| r >= 0.5 && best_peer.is_none_or(|p| r > p)),
        });
        let down = self.ratio("d_down", "mib_per_s", POSTERN_HTTP);
        let up = self.ratio("d_up", "mib_per_s", POSTERN_HTTP);
        checks.push(Check {
            number: 3,
            goal: "bulk download and upload (d) ≥ 0.30× direct each".into(),
            measured: format!("down {} × / up {} ×", fmt_ratio(down), fmt_ratio(up)),
            met: down.zip(up).map(|(d, u)| d >= 0.30 && u >= 0.30),
        });
        let added = self
            .median("c", "p50_us", POSTERN_HTTP)
            .zip(self.median("c", "p50_us", DIRECT))
            .map(|(p, d)| p - d);
        checks.push(Check {
            number: 4,
            goal: "added p50 latency on one sequential connection (c) ≤ 50 µs".into(),
            measured: added.map_or("not measured".into(), |a| format!("{a:.0} µs")),
            met: added.map(|a| a <= 50.0),
        });
        let cold = self.median("e", "cold_idle_rss_mib", POSTERN_HTTP);
        let idle = self.find("e", "idle_rss_mib", POSTERN_HTTP).cloned();
        let peak_a = self.find("a", "peak_rss_mib", POSTERN_HTTP).map(|s| s.max);
        let growth = idle
            .as_ref()
            .and_then(|s| Some(s.samples.last()? - s.samples.first()?));
        let growth_ok = match &idle {
            // One repetition cannot show growth across repetitions.
            Some(s) if s.samples.len() < 2 => None,
            _ => growth.map(|g| g <= 2.0),
        };
        checks.push(Check {
            number: 5,
            goal: "edge + connector RSS ≤ 40 MiB idle (as started, and after each repetition), ≤ 64 MiB at peak under (a), no growth across repetitions (≤ 2 MiB from the first repetition's idle to the last's)".into(),
            measured: format!(
                "idle as started {}, after repetitions {}; peak under (a) {}; growth {}",
                cold.map_or("–".into(), |c| format!("{c:.1} MiB")),
                idle.as_ref()
                    .map_or("–".into(), |s| format!("{:.1}–{:.1} MiB", s.min, s.max)),
                peak_a.map_or("–".into(), |p| format!("{p:.1} MiB")),
                growth.map_or("–".into(), |g| format!("{g:+.1} MiB")),
            ),
            met: idle
                .as_ref()
                .zip(peak_a)
                .zip(cold)
                .map(|((idle, peak), cold)| {
                    cold <= 40.0 && idle.max <= 40.0 && peak <= 64.0 && growth_ok != Some(false)
                }),
        });
        for (baseline, words) in [
            (
                "terraform_data",
                "N terraform_data (the target as the issue states it)",
            ),
            (
                "terraform_data_shape",
                "the same count and shape in terraform_data (N + N referencing them by index)",
            ),
        ] {
            let apply = self.ratio_of("f", "apply_s", "postern", baseline);
            let plan = self.ratio_of("f", "plan_s", "postern", baseline);
            checks.push(Check {
                number: 6,
                goal: format!(
                    "provider: apply of N hostnames with their N tunnels ≤ 1.5× {words}; no-change plan ≤ 1.5×"
                ),
                measured: format!("apply {} ×, plan {} ×", fmt_ratio(apply), fmt_ratio(plan)),
                met: apply.zip(plan).map(|(a, p)| a <= 1.5 && p <= 1.5),
            });
        }
        self.checks = checks;
    }

    fn ratio_of(&self, workload: &str, metric: &str, target: &str, base: &str) -> Option<f64> {
        let value = self.median(workload, metric, target)?;
        let base = self.median(workload, metric, base)?;
        (base > 0.0).then(|| value / base)
    }

    /// The Markdown tables.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "Run {} on {} cores, {:.0} GiB ({}; Linux {}); load {:.2} at start, {:.2} at end. \
             Mode {}, {} repetition(s), interleaved; cells are median (min–max).\n",
            self.date,
            self.machine.cores,
            self.machine.memory_gib,
            self.machine.cpu,
            self.machine.kernel,
            self.machine.load_at_start,
            self.machine.load_at_end,
            s.mode,
            s.repetitions
        );
        let measured: Vec<&TargetStatus> = self
            .targets
            .iter()
            .filter(|t| t.skipped.is_none())
            .collect();

        let _ = writeln!(
            out,
            "| target | (a) small keep-alive req/s | × direct | p50 µs | p99 µs | (b) new conn req/s | × direct | (c) seq p50 µs | p99 µs | added p50 µs | (d) down MiB/s | × direct | (d) up MiB/s | × direct |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        let direct_c = self.median("c", "p50_us", DIRECT);
        for target in &measured {
            let t = target.name.as_str();
            let added = self
                .median("c", "p50_us", t)
                .zip(direct_c)
                .filter(|_| t != DIRECT)
                .map_or("–".into(), |(p, d)| format!("{:+.0}", p - d));
            let _ = writeln!(
                out,
                "| {t} | {} | {} | {} | {} | {} | {} | {} | {} | {added} | {} | {} | {} | {} |",
                self.cell("a", "req_per_s", t, 0),
                fmt_ratio(self.ratio("a", "req_per_s", t)),
                self.cell("a", "p50_us", t, 0),
                self.cell("a", "p99_us", t, 0),
                self.cell("b", "req_per_s", t, 0),
                fmt_ratio(self.ratio("b", "req_per_s", t)),
                self.cell("c", "p50_us", t, 0),
                self.cell("c", "p99_us", t, 0),
                self.cell("d_down", "mib_per_s", t, 0),
                fmt_ratio(self.ratio("d_down", "mib_per_s", t)),
                self.cell("d_up", "mib_per_s", t, 0),
                fmt_ratio(self.ratio("d_up", "mib_per_s", t)),
            );
        }

        let _ = writeln!(
            out,
            "\n(e) The proxy's own processes (Postern: edge + connector; rathole and bore: server + client; nginx: master + workers); CPU per request or per GiB moved, RSS peak while the workload ran.\n"
        );
        let _ = writeln!(
            out,
            "| target | idle RSS MiB as started | idle RSS MiB after each repetition | peak RSS (a) MiB | peak RSS (all) MiB | CPU µs/req (a) | CPU µs/req (b) | CPU µs/req (c) | CPU s/GiB down | CPU s/GiB up |"
        );
        let _ = writeln!(
            out,
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for target in measured.iter().filter(|t| t.name != DIRECT) {
            let t = target.name.as_str();
            let peak_all = ["a", "b", "c", "d_down", "d_up"]
                .iter()
                .filter_map(|w| self.find(w, "peak_rss_mib", t).map(|s| s.max))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
            let _ = writeln!(
                out,
                "| {t} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                self.cell("e", "cold_idle_rss_mib", t, 1),
                self.cell("e", "idle_rss_mib", t, 1),
                self.cell("a", "peak_rss_mib", t, 1),
                peak_all.map_or("–".into(), |p| format!("{p:.1}")),
                self.cell("a", "cpu_us_per_req", t, 0),
                self.cell("b", "cpu_us_per_req", t, 0),
                self.cell("c", "cpu_us_per_req", t, 0),
                self.cell("d_down", "cpu_s_per_gib", t, 2),
                self.cell("d_up", "cpu_s_per_gib", t, 2),
            );
        }
        if let Some(idle) = self.find("e", "idle_rss_mib", POSTERN_HTTP) {
            let list: Vec<String> = idle.samples.iter().map(|v| format!("{v:.1}")).collect();
            let _ = writeln!(
                out,
                "\nPostern idle RSS (MiB) after each repetition, in order: {}",
                list.join(", ")
            );
        }

        if self.series.iter().any(|s| s.workload == "f") {
            let _ = writeln!(
                out,
                "\n(f) Terraform, seconds (N = {} hostnames with their N tunnels; default parallelism):\n",
                s.f_hostnames
            );
            let _ = writeln!(
                out,
                "| command | N terraform_data | same shape in terraform_data (N + N referencing them) | postern (N hostnames + N tunnels) | × N terraform_data | × same shape |"
            );
            let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- |");
            for (label, metric) in [("apply", "apply_s"), ("no-change plan", "plan_s")] {
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} | {} | {} |",
                    self.cell("f", metric, "terraform_data", 2),
                    self.cell("f", metric, "terraform_data_shape", 2),
                    self.cell("f", metric, "postern", 2),
                    fmt_ratio(self.ratio_of("f", metric, "postern", "terraform_data")),
                    fmt_ratio(self.ratio_of("f", metric, "postern", "terraform_data_shape")),
                );
            }
            let _ = writeln!(
                out,
                "\nControl API: {} tunnel creates/s (8 concurrent clients).",
                self.cell("f", "api_creates_per_s", "postern", 0)
            );
        }

        let _ = writeln!(out, "\nTargets (issue 8):\n");
        let _ = writeln!(out, "| # | goal | measured | met |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for check in &self.checks {
            let met = match check.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "not measured",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {met} |",
                check.number, check.goal, check.measured
            );
        }
        let skipped: Vec<&TargetStatus> = self
            .targets
            .iter()
            .filter(|t| t.skipped.is_some())
            .collect();
        if !skipped.is_empty() {
            let _ = writeln!(out, "\nSkipped:");
            for target in skipped {
                let _ = writeln!(
                    out,
                    "- {}: {}",
                    target.name,
                    target.skipped.as_deref().unwrap_or_default()
                );
            }
        }
        for note in &self.notes {
            let _ = writeln!(out, "\nNote: {note}");
        }
        let _ = writeln!(out, "\nTargets measured:");
        for target in &measured {
            let _ = writeln!(out, "- {}: {}", target.name, target.description);
        }
        let _ = writeln!(out, "\nLoad generator: {}", self.generator);
        out
    }

    fn cell(&self, workload: &str, metric: &str, target: &str, decimals: usize) -> String {
        match self.find(workload, metric, target) {
            None => "–".into(),
            Some(s) if s.samples.len() == 1 => format!("{:.*}", decimals, s.median),
            Some(s) => format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, s.median, decimals, s.min, decimals, s.max
            ),
        }
    }
}

fn fmt_ratio(ratio: Option<f64>) -> String {
    ratio.map_or("–".into(), |r| format!("{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges_follow_the_samples() {
        let mut samples = Samples::default();
        for v in [3.0, 1.0, 2.0, 10.0] {
            samples.push("a", "req_per_s", "direct", v);
        }
        let series = samples.into_series();
        assert_eq!(series[0].median, 2.5);
        assert_eq!(series[0].min, 1.0);
        assert_eq!(series[0].max, 10.0);
    }
}
