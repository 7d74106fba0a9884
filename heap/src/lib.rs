//! How the edge and the connector use the heap: memory a burst of traffic freed goes back to
//! the operating system once the burst is over (and glibc is kept from doing so in the middle
//! of one), and hyper's large futures are spawned boxed ([`BoxingExecutor`]).
//!
//! glibc's allocator keeps what a burst freed (bodies in flight, per-connection buffers) in
//! its arenas for reuse; it only hands back the free space at the very top of each arena, so
//! a process that served a burst stays at its high-water mark long after the memory is free.
//! [`spawn_trimmer`] watches the process's CPU time and, once a busy period is followed by a
//! quiet quarter second, asks glibc to return every free page (`malloc_trim`); once more a
//! few seconds later, for what the end of the burst freed after that; never twice within two
//! seconds, so traffic that pauses often is not trimmed at every pause and faulted back in at
//! the next burst; and every ten seconds while the work goes on without a pause, so a process
//! that is never quiet does not keep every page its heap ever spread over. The Go runtime
//! that other tunnels are built on does the like with its background scavenger.
//!
//! Off Linux with glibc, trimming has nothing to do and nothing is started.

mod executor;

use std::time::Duration;

pub use executor::BoxingExecutor;

/// How often the process's CPU time is looked at (a read of `/proc/self/stat`, some
/// microseconds).
const TICK: Duration = Duration::from_millis(250);

/// CPU time (in clock ticks, normally 10 ms each) in one [`TICK`] that counts as busy: 8% of
/// a core.
const BUSY_TICKS: u64 = 2;

/// The quiet ticks after a burst at which the heap is trimmed: the first (a quarter second
/// after the work stopped), and one four seconds later for what was freed after it
/// (connections closing once their visitors are gone).
const TRIM_AT_QUIET_TICKS: [u32; 2] = [1, 17];

/// The fewest ticks between two trims: two seconds. Traffic that pauses every few hundred
/// milliseconds would otherwise have its heap trimmed at every pause and faulted back in at
/// the next burst; a trim that falls due sooner waits, and happens at the first quiet tick
/// after the floor (if the process is still quiet then).
const TICKS_BETWEEN_TRIMS: u32 = 8;

/// Busy ticks in a row after which the heap is trimmed although the work goes on: ten seconds.
/// With glibc's own trimming deferred ([`TRIM_THRESHOLD`]), a process that is never quiet
/// would otherwise keep every page its heap ever spread over: in the soak's ten minutes of
/// sustained mixed traffic the connector's RSS crept, in steps, from 25.6 to 30.0 MiB (+17%)
/// and the edge's from 27.5 to 29.7; trimmed every ten seconds they went from 24.0 to 25.6 and
/// from 26.6 to 27.6, with no change in throughput.
const TRIM_EVERY_BUSY_TICKS: u32 = 40;

/// Asks the allocator to return its free pages to the operating system; true when it did.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_memory() -> bool {
    // SAFETY: `malloc_trim` takes no pointers and has no preconditions; it walks and locks
    // glibc's own arenas and advises the kernel that their free pages are unused.
    unsafe { libc::malloc_trim(0) != 0 }
}

/// Asks the allocator to return its free pages to the operating system; true when it did.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_memory() -> bool {
    false
}

/// How much free memory may sit at the top of one of glibc's arenas before glibc returns it on
/// its own, while the trimmer is running (glibc's default is 128 KiB).
const TRIM_THRESHOLD: libc::c_int = 32 * 1024 * 1024;

/// Leaves returning memory to the trimmer: glibc gives back the top of an arena by itself only
/// when more than [`TRIM_THRESHOLD`] is free there.
///
/// By default glibc does so whenever 128 KiB is free at an arena's top. Under bulk traffic the
/// top moves by more than that all the time, and every page given back is faulted in again a
/// moment later: a 256 MiB transfer cost the edge about 64,000 page faults (one per 4 KiB
/// moved) and the connector 55,000, a third of the CPU per GiB. With the trimmer returning the
/// memory once the process is quiet, that churn buys nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn defer_automatic_trim() -> bool {
    // SAFETY: `mallopt` takes no pointers and has no preconditions; it sets one parameter of
    // glibc's allocator under the allocator's own lock, and any value is valid for this one.
    unsafe { libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn defer_automatic_trim() -> bool {
    false
}

/// Starts the task that trims the heap once a burst of work is over and every ten seconds of
/// work without a pause (on the current tokio runtime), and from then on keeps glibc from
/// trimming in the middle of a burst ([`TRIM_THRESHOLD`]). Returns `None` where trimming means
/// nothing (not Linux with glibc) or the process's CPU time cannot be read; glibc's settings
/// are then left alone.
pub fn spawn_trimmer() -> Option<tokio::task::JoinHandle<()>> {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return None;
    }
    let first = cpu_ticks()?;
    if !defer_automatic_trim() {
        tracing::debug!("glibc refused the trim threshold; it keeps trimming on its own");
    }
    Some(tokio::spawn(async move {
        let mut bursts = Bursts::new(first);
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let Some(now) = cpu_ticks() else { return };
            if bursts.due(now) {
                let released = tokio::task::spawn_blocking(release_free_memory)
                    .await
                    .unwrap_or(false);
                tracing::debug!(released, "returned the free heap to the system");
            }
        }
    }))
}

/// User plus system CPU time of this process so far, in clock ticks (`/proc/self/stat`).
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_ticks(&stat)
}

/// `utime` and `stime`, the 14th and 15th fields; the command name (2nd field, in
/// parentheses) may itself hold spaces and parentheses, so fields are counted after its end.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Tells, tick by tick, when to trim: after a busy period, and every so often during a long one.
#[derive(Debug)]
struct Bursts {
    last: u64,
    /// Quiet ticks since the last busy one; `None` before the first burst.
    quiet: Option<u32>,
    /// Trims done since the last busy tick (indexes [`TRIM_AT_QUIET_TICKS`]).
    trims: usize,
    /// Ticks since the last trim.
    since_trim: u32,
    /// Busy ticks in a row, since the last trim.
    busy_run: u32,
}

impl Bursts {
    fn new(cpu_ticks: u64) -> Self {
        Self {
            last: cpu_ticks,
            quiet: None,
            trims: 0,
            since_trim: u32::MAX,
            busy_run: 0,
        }
    }

    /// Given the CPU time now, one tick after the last call, whether to trim now: at the quiet
    /// ticks of [`TRIM_AT_QUIET_TICKS`] after a busy one (or as soon after them as
    /// [`TICKS_BETWEEN_TRIMS`] allows), and every [`TRIM_EVERY_BUSY_TICKS`] busy ticks in a row.
    fn due(&mut self, cpu_ticks: u64) -> bool {
        let used = cpu_ticks.saturating_sub(self.last);
        self.last = cpu_ticks;
        self.since_trim = self.since_trim.saturating_add(1);
        let trim = if used >= BUSY_TICKS {
            self.quiet = Some(0);
            self.trims = 0;
            self.busy_run += 1;
            self.busy_run >= TRIM_EVERY_BUSY_TICKS
        } else {
            self.busy_run = 0;
            self.quiet_trim_due()
        };
        if trim {
            self.since_trim = 0;
            self.busy_run = 0;
        }
        trim
    }

    /// On a quiet tick: whether the next of [`TRIM_AT_QUIET_TICKS`] is due and the floor allows it.
    fn quiet_trim_due(&mut self) -> bool {
        let Some(quiet) = self.quiet.as_mut() else {
            return false;
        };
        *quiet = quiet.saturating_add(1);
        let due = TRIM_AT_QUIET_TICKS
            .get(self.trims)
            .is_some_and(|&at| *quiet >= at);
        if !due || self.since_trim < TICKS_BETWEEN_TRIMS {
            return false;
        }
        self.trims += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn glibc_takes_the_trim_threshold() {
        assert!(
            defer_automatic_trim(),
            "mallopt(M_TRIM_THRESHOLD) was refused"
        );
    }

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (tokio (rt) worker) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    123 45 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(168));
        assert_eq!(parse_cpu_ticks("4242 (postern) S 1 2"), None);
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert!(cpu_ticks().is_some(), "this process's own stat is readable");
    }

    #[test]
    fn the_heap_is_trimmed_when_a_burst_ends_and_once_more_a_little_later() {
        let mut bursts = Bursts::new(100);
        let trims = |bursts: &mut Bursts, cpu: &[u64]| -> Vec<bool> {
            cpu.iter().map(|&c| bursts.due(c)).collect()
        };
        assert_eq!(
            trims(&mut bursts, &[100, 101, 101]),
            [false; 3],
            "quiet from the start: nothing to give back"
        );
        assert_eq!(
            trims(&mut bursts, &[150, 190, 191]),
            [false, false, true],
            "busy, busy, then a trim at the first quiet tick"
        );
        let quiet: Vec<bool> = (0..30).map(|_| bursts.due(191)).collect();
        let later: Vec<usize> = (0..30).filter(|&i| quiet[i]).collect();
        assert_eq!(
            later,
            [15],
            "one more at the seventeenth quiet tick, and no more"
        );
        assert_eq!(
            trims(&mut bursts, &[260, 260]),
            [false, true],
            "a second burst, long after the last trim: trimmed at once"
        );
        assert_eq!(
            trims(&mut bursts, &[300, 300, 300, 300, 300, 300, 300, 300, 300]),
            [false, false, false, false, false, false, false, true, false],
            "a third burst half a second after that trim: its trim waits for the two-second floor"
        );
    }

    #[test]
    fn traffic_that_pauses_often_is_trimmed_at_most_every_two_seconds() {
        let mut bursts = Bursts::new(0);
        let mut cpu = 0;
        let mut trimmed_at = Vec::new();
        // Busy for one tick, quiet for one, for ten seconds.
        for tick in 0..40u32 {
            if tick % 2 == 0 {
                cpu += 10;
            }
            if bursts.due(cpu) {
                trimmed_at.push(tick);
            }
        }
        assert_eq!(trimmed_at, [1, 9, 17, 25, 33]);
        // Then quiet: the trim four seconds after the last burst still comes.
        let quiet: Vec<u32> = (40..80u32).filter(|_| bursts.due(cpu)).collect();
        assert_eq!(
            quiet,
            [41, 55],
            "the first quiet tick past the floor, then the later trim"
        );
    }

    #[test]
    fn a_process_that_is_never_quiet_is_trimmed_every_ten_seconds() {
        let mut bursts = Bursts::new(0);
        let busy: Vec<u32> = (1..=100u32)
            .filter(|&tick| bursts.due(u64::from(tick) * 10))
            .collect();
        assert_eq!(busy, [40, 80], "every forty busy ticks in a row");
        // Quiet from tick 101: the trims at the end of the work come as after any burst.
        let quiet: Vec<u32> = (101..130u32).filter(|_| bursts.due(1000)).collect();
        assert_eq!(quiet, [101, 117]);
        // A quiet tick breaks the run: forty busy ticks count from there.
        let mut bursts = Bursts::new(0);
        let mut cpu = 0;
        let mut trimmed = Vec::new();
        for tick in 1..=80u32 {
            if tick != 30 {
                cpu += 10;
            }
            if bursts.due(cpu) {
                trimmed.push(tick);
            }
        }
        assert_eq!(
            trimmed,
            [30, 70],
            "the pause's own trim, then forty busy ticks after it"
        );
    }

    /// Resident memory of this process, in KiB.
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_below_a_live_block_goes_back_to_the_system() {
        // 64 MiB in small blocks (from the heap, not mapped one by one), then everything freed
        // but the last block, which keeps the free space off the top of the heap where glibc
        // would return it by itself.
        const BLOCKS: usize = 16 * 1024;
        let mut blocks: Vec<Vec<u8>> = (0..BLOCKS).map(|i| vec![i as u8; 4096]).collect();
        let last = blocks.pop().expect("blocks");
        drop(blocks);
        let before = rss_kib();
        release_free_memory();
        let after = rss_kib();
        assert!(
            before.saturating_sub(after) >= 32 * 1024,
            "RSS {before} KiB before the trim, {after} KiB after"
        );
        drop(last);
    }
}
