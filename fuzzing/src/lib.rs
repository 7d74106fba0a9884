//! Bounded, seeded fuzzing that runs inside `cargo test`, on stable Rust, without coverage
//! instrumentation. A target is a function of bytes that panics when a property breaks;
//! [`Fuzz::run`] first replays every file of the target's committed corpus, then feeds it, for a
//! bounded time, inputs that the target's generator writes or that come from mutating the corpus
//! and earlier inputs. A failing input is shrunk, saved to a file and reported with the seed, so
//! the run can be replayed and the input committed to the corpus as a regression.
//!
//! - `POSTERN_FUZZ_SECONDS`: how long each target runs after the corpus (default 5; `0` replays
//!   the corpus only).
//! - `POSTERN_FUZZ_SEED`: the seed (decimal or `0x` hex); a fresh one each run by default, printed
//!   at the start of the run.

pub mod json;
mod mutate;
mod rng;

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use mutate::{minimize, mutate};
pub use rng::Rng;

/// Seconds each target runs when `POSTERN_FUZZ_SECONDS` is not set.
pub const DEFAULT_SECONDS: f64 = 5.0;

/// How long the shrinking of a failing input may take.
const MINIMIZE_FOR: Duration = Duration::from_secs(20);

/// An input that takes longer than this (in a debug build) fails the target: a parser facing
/// hostile input must not be made to spin.
const DEFAULT_SLOW: Duration = Duration::from_secs(5);

/// Inputs kept for mutation besides the corpus.
const POOL_SIZE: usize = 512;

/// One fuzz target: a name, its corpus directory and its mutation settings.
#[derive(Debug, Clone)]
pub struct Fuzz {
    name: String,
    corpus_dir: PathBuf,
    dictionary: Vec<Vec<u8>>,
    max_len: usize,
    generated_percent: usize,
    slow: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Corpus files replayed.
    pub corpus: usize,
    /// Inputs tried after the corpus.
    pub inputs: u64,
    /// The seed of the run.
    pub seed: u64,
}

impl Fuzz {
    /// The target `name` with its corpus in `corpus_dir` (which must exist).
    pub fn new(name: &str, corpus_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.to_string(),
            corpus_dir: corpus_dir.into(),
            dictionary: Vec::new(),
            max_len: 64 * 1024,
            generated_percent: 33,
            slow: DEFAULT_SLOW,
        }
    }

    /// Words the mutator inserts (keywords, field names, magic bytes).
    pub fn dictionary<W: AsRef<[u8]>>(mut self, words: impl IntoIterator<Item = W>) -> Self {
        self.dictionary
            .extend(words.into_iter().map(|w| w.as_ref().to_vec()));
        self
    }

    /// The longest input the mutator makes (default 64 KiB).
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// How many inputs in a hundred come from the generator rather than from mutating earlier
    /// ones (default 33). Structure-aware generators deserve more for parsers of text.
    pub fn generated_percent(mut self, percent: usize) -> Self {
        self.generated_percent = percent.min(100);
        self
    }

    /// How long one input may take before it counts as a failure (default 5 s).
    pub fn slow(mut self, limit: Duration) -> Self {
        self.slow = limit;
        self
    }

    /// Replays the corpus, then fuzzes `check` with inputs from `generate` and mutation until the
    /// time budget is spent.
    ///
    /// # Panics
    /// When `check` panics on an input (with the shrunk input, where it was saved and the seed),
    /// or when the corpus directory cannot be read.
    pub fn run(
        self,
        mut generate: impl FnMut(&mut Rng) -> Vec<u8>,
        check: impl Fn(&[u8]),
    ) -> Report {
        install_quiet_hook();
        let seed = seed();
        let budget = budget();
        let corpus = read_corpus(&self.corpus_dir);
        say(&format!(
            "fuzz {}: replaying {} corpus files, then {:.0} s with POSTERN_FUZZ_SEED={seed:#x}",
            self.name,
            corpus.len(),
            budget.as_secs_f64()
        ));
        for (path, input) in &corpus {
            if let Err(message) = self.execute_timed(&check, input) {
                panic!(
                    "fuzz target {}: corpus file {} fails: {message}",
                    self.name,
                    path.display()
                );
            }
        }

        let mut rng = Rng::new(seed);
        let mut pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, input)| input).collect();
        let corpus_len = pool.len();
        let started = Instant::now();
        let mut inputs = 0u64;
        while started.elapsed() < budget {
            let mut input = if pool.is_empty() || rng.below(100) < self.generated_percent {
                generate(&mut rng)
            } else {
                let base = rng.pick(&pool).clone();
                mutate(&mut rng, &base, &self.dictionary, &pool, self.max_len)
            };
            input.truncate(self.max_len);
            if let Err(message) = self.execute_timed(&check, &input) {
                self.fail(&check, &input, &message, seed);
            }
            inputs += 1;
            if rng.one_in(4) {
                if pool.len() < corpus_len + POOL_SIZE {
                    pool.push(input);
                } else {
                    let slot = corpus_len + rng.below(POOL_SIZE);
                    pool[slot] = input;
                }
            }
        }
        say(&format!(
            "fuzz {}: {inputs} inputs in {:.1} s, no failure (seed {seed:#x})",
            self.name,
            started.elapsed().as_secs_f64()
        ));
        Report {
            corpus: corpus_len,
            inputs,
            seed,
        }
    }

    /// [`execute`], and a failure when the input took longer than the limit.
    fn execute_timed(&self, check: &dyn Fn(&[u8]), input: &[u8]) -> Result<(), String> {
        let started = Instant::now();
        execute(check, input)?;
        let took = started.elapsed();
        if took > self.slow {
            return Err(format!(
                "slow input: took {:.1} s (limit {:.1} s)",
                took.as_secs_f64(),
                self.slow.as_secs_f64()
            ));
        }
        Ok(())
    }

    fn fail(&self, check: &dyn Fn(&[u8]), input: &[u8], message: &str, seed: u64) -> ! {
        // A slow input is kept whole: shrinking it would take as long as it is slow, each time.
        let small = if message.starts_with("slow input") {
            input.to_vec()
        } else {
            let mut fails = |candidate: &[u8]| execute(check, candidate).is_err();
            minimize(input, &mut fails, Instant::now() + MINIMIZE_FOR)
        };
        let message = match execute(check, &small) {
            Err(panic) => panic,
            Ok(()) => message.to_string(),
        };
        let saved = save_failure(&self.name, &small);
        panic!(
            "fuzz target {name} failed: {message}\n  input ({len} bytes, shrunk from {original}): {shown}\n  \
             saved to {saved}\n  to keep it as a regression: cp {saved} {corpus}/\n  \
             to replay the run: POSTERN_FUZZ_SEED={seed:#x}",
            name = self.name,
            len = small.len(),
            original = input.len(),
            shown = escape(&small, 2_000),
            corpus = self.corpus_dir.display(),
        );
    }
}

/// The time budget of each target: `POSTERN_FUZZ_SECONDS`, or [`DEFAULT_SECONDS`].
pub fn budget() -> Duration {
    let seconds = std::env::var("POSTERN_FUZZ_SECONDS")
        .ok()
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_SECONDS);
    Duration::from_secs_f64(seconds)
}

/// The seed: `POSTERN_FUZZ_SEED`, or one taken from the clock.
pub fn seed() -> u64 {
    let given = std::env::var("POSTERN_FUZZ_SEED").ok().and_then(|text| {
        let text = text.trim();
        match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => text.parse().ok(),
        }
    });
    given.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Rng::new(now.as_nanos() as u64 ^ u64::from(std::process::id())).next_u64()
    })
}

/// Every file directly in `dir`, in name order (names starting with `.` are skipped).
///
/// # Panics
/// When `dir` cannot be read: a target whose corpus is missing would silently replay nothing.
pub fn read_corpus(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus directory {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// `bytes` as a Rust byte-string literal body, cut after `max` characters.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let mut out = String::from("b\"");
    for &byte in bytes {
        if out.len() >= max {
            let _ = write!(out, "…\" (+{} bytes)", bytes.len());
            return out;
        }
        out.extend(std::ascii::escape_default(byte).map(char::from));
    }
    out.push('"');
    out
}

thread_local! {
    /// Set while a target runs on this thread: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    /// The last panic of a target on this thread, as the panic hook describes it.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Runs `check` on `input`; `Err` with the panic's message and location if it panicked.
fn execute(check: &dyn Fn(&[u8]), input: &[u8]) -> Result<(), String> {
    QUIET.with(|quiet| quiet.set(true));
    let result = catch_unwind(AssertUnwindSafe(|| check(input)));
    QUIET.with(|quiet| quiet.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| "panicked".to_string())
    })
}

/// Installs (once per process) a panic hook that stays silent for fuzzed inputs, so that
/// thousands of shrinking attempts do not flood the output; other panics print as before.
fn install_quiet_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Writes a failing input under the temporary directory and returns the path.
fn save_failure(name: &str, input: &[u8]) -> String {
    let dir = std::env::temp_dir().join("postern-fuzz").join(name);
    let path = dir.join(format!("crash-{:016x}", fnv1a(input)));
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, input)) {
        Ok(()) => path.display().to_string(),
        Err(e) => format!("(not saved: {e})"),
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One line on the real stderr, past the test harness's capture, so CI logs show every run.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_shows_bytes_and_cuts_long_input() {
        assert_eq!(escape(b"a\"\x00", 100), "b\"a\\\"\\x00\"");
        assert!(escape(&[b'x'; 500], 20).ends_with("(+500 bytes)"));
    }

    #[test]
    fn execute_turns_a_panic_into_its_message() {
        install_quiet_hook();
        let check = |bytes: &[u8]| assert!(bytes.is_empty(), "not empty: {}", bytes.len());
        assert_eq!(execute(&check, b""), Ok(()));
        let message = execute(&check, b"abc").expect_err("panics");
        assert!(message.contains("not empty: 3"), "{message}");
    }

    #[test]
    fn a_failing_input_is_shrunk_and_reported() {
        let dir =
            std::env::temp_dir().join(format!("postern-fuzz-selftest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join("seed"), b"hello").expect("seed");
        let outcome = catch_unwind(|| {
            Fuzz::new("selftest", &dir).run(
                |rng| {
                    let len = rng.short_len(32);
                    rng.bytes(len)
                },
                |bytes| assert!(!bytes.contains(&b'!'), "found a bang"),
            )
        });
        let _ = std::fs::remove_dir_all(&dir);
        // With the default budget the generator all but surely writes a `!`; when it does, the
        // report shows the one byte that matters.
        if let Err(payload) = outcome {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_default();
            assert!(message.contains("found a bang"), "{message}");
            assert!(message.contains("(1 bytes, shrunk from"), "{message}");
        }
    }
}
