//! Counts over the last minute: a ring of one-second buckets, each an atomic word that holds the
//! second it counts for and its count, so counting is one compare-and-swap and no lock. A bucket
//! found holding an older second is restarted at 1; reading adds the buckets whose second lies
//! within the window. The status page's "observed share" of each route comes from these.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// How many seconds a [`Window`] covers: the current second and the 59 before it.
pub(crate) const WINDOW_SECONDS: u64 = 60;

/// Bits of a bucket word that hold the count; the rest hold the second.
const COUNT_BITS: u32 = 24;
/// The largest count a bucket holds (a second with more events saturates there).
const MAX_COUNT: u64 = (1 << COUNT_BITS) - 1;

/// Events over the last [`WINDOW_SECONDS`] seconds.
#[derive(Debug)]
pub(crate) struct Window {
    buckets: [AtomicU64; WINDOW_SECONDS as usize],
}

impl Default for Window {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Window {
    /// Counts one event now.
    pub(crate) fn add(&self) {
        self.add_at(now_second());
    }

    /// The events of the last [`WINDOW_SECONDS`] seconds, this one included.
    pub(crate) fn total(&self) -> u64 {
        self.total_at(now_second())
    }

    /// Counts one event at `second` (on the clock of [`now_second`]).
    pub(crate) fn add_at(&self, second: u64) {
        let bucket = &self.buckets[(second % WINDOW_SECONDS) as usize];
        // The closure returns `None` only for an event a full window older than what the bucket
        // holds, which no reader would count anyway.
        let _ = bucket.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |word| {
            let (at, count) = unpack(word);
            match at.cmp(&second) {
                std::cmp::Ordering::Equal => Some(pack(second, (count + 1).min(MAX_COUNT))),
                std::cmp::Ordering::Less => Some(pack(second, 1)),
                std::cmp::Ordering::Greater => None,
            }
        });
    }

    /// The events counted at `now` and the [`WINDOW_SECONDS`]` - 1` seconds before it.
    pub(crate) fn total_at(&self, now: u64) -> u64 {
        self.buckets
            .iter()
            .map(|bucket| unpack(bucket.load(Ordering::Relaxed)))
            .filter(|(at, _)| *at <= now && now - at < WINDOW_SECONDS)
            .map(|(_, count)| count)
            .sum()
    }
}

/// Whole seconds on a monotonic clock that starts (at 1) with the first use in this process.
fn now_second() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

fn pack(second: u64, count: u64) -> u64 {
    (second << COUNT_BITS) | count
}

fn unpack(word: u64) -> (u64, u64) {
    (word >> COUNT_BITS, word & MAX_COUNT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_the_last_sixty_seconds() {
        let window = Window::default();
        assert_eq!(window.total_at(1), 0);
        for _ in 0..3 {
            window.add_at(10);
        }
        window.add_at(30);
        window.add_at(69);
        assert_eq!(window.total_at(10), 3);
        assert_eq!(window.total_at(30), 4);
        // Second 10 is still inside at 69 (69 - 10 = 59), and gone at 70.
        assert_eq!(window.total_at(69), 5);
        assert_eq!(window.total_at(70), 2);
        assert_eq!(window.total_at(89), 2);
        assert_eq!(window.total_at(90), 1);
        assert_eq!(window.total_at(128), 1);
        assert_eq!(window.total_at(129), 0);
        // Nothing counted later than the moment asked about is included.
        assert_eq!(window.total_at(29), 3);
    }

    #[test]
    fn a_bucket_reused_a_minute_later_starts_again() {
        let window = Window::default();
        window.add_at(5);
        window.add_at(5);
        // Second 65 falls in second 5's bucket.
        window.add_at(65);
        assert_eq!(window.total_at(65), 1);
        // An event a whole window older than the bucket's second is dropped, not mixed in.
        window.add_at(5);
        assert_eq!(window.total_at(65), 1);
        assert_eq!(window.total_at(5), 0);
    }

    #[test]
    fn a_steady_rate_reads_as_sixty_seconds_of_it() {
        let window = Window::default();
        for second in 1..=300 {
            window.add_at(second);
            window.add_at(second);
            if second >= 60 {
                assert_eq!(window.total_at(second), 120, "at {second}");
            }
        }
        // Silence empties it, one second at a time.
        assert_eq!(window.total_at(330), 60);
        assert_eq!(window.total_at(360), 0);
    }

    #[test]
    fn a_busy_second_saturates_instead_of_spilling_into_the_second() {
        let window = Window::default();
        window.buckets[7].store(pack(7, MAX_COUNT - 1), Ordering::Relaxed);
        window.add_at(7);
        window.add_at(7);
        assert_eq!(window.total_at(7), MAX_COUNT);
        assert_eq!(unpack(window.buckets[7].load(Ordering::Relaxed)).0, 7);
    }

    #[test]
    fn concurrent_counting_loses_nothing() {
        let window = std::sync::Arc::new(Window::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let window = window.clone();
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        window.add_at(100 + i % 3);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(window.total_at(102), 40_000);
    }

    #[test]
    fn the_clock_starts_at_one_and_never_goes_back() {
        let first = now_second();
        assert!(first >= 1);
        assert!(now_second() >= first);
        let window = Window::default();
        window.add();
        assert_eq!(window.total(), 1);
    }
}
