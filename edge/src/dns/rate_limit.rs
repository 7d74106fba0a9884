//! Response-rate limiting (RRL, as BIND and NSD do it): the edge answers UDP questions from any
//! source address it is told, so a spoofed flood of questions makes it send its answers to a
//! victim. Identical answers to one client prefix (an IPv4 /24, an IPv6 /56 by default) are
//! limited to a rate; beyond it they are dropped, except that every `slip`-th one is sent
//! truncated (TC set, no records), so a real client in that prefix retries over TCP, where
//! spoofing is not possible and no limit applies.
//!
//! What makes two answers identical: the same records (question name and type), the same
//! negative answer of one zone (NXDOMAIN and NODATA count per zone, so random names do not each
//! get their own allowance), or any error.
//!
//! Memory is fixed: [`BUCKETS`] token buckets in shards, each shard a small set-associative
//! table; a new key takes the least recently used bucket of its set. Keys are hashed with a
//! per-process random key, so a sender cannot aim its keys at another's bucket.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use hickory_proto::rr::{Name, RecordType};

/// How many buckets the limiter keeps (40 bytes each: 1.25 MiB).
pub(crate) const BUCKETS: usize = 32_768;
/// Shards, each behind its own lock.
const SHARDS: usize = 64;
/// Buckets a key may land in (within its shard); the least recently used one is replaced.
const WAYS: usize = 8;
const SETS_PER_SHARD: usize = BUCKETS / SHARDS / WAYS;

/// The limiter's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateLimitConfig {
    /// Identical answers per second to one prefix (and the burst allowed at once); 0 turns the
    /// limiter off.
    pub(crate) responses_per_second: u32,
    /// Of the answers over the limit, every `slip`-th is sent truncated instead of dropped; 0
    /// drops them all, 1 truncates them all.
    pub(crate) slip: u32,
    /// IPv4 clients in one prefix of this length count as one.
    pub(crate) ipv4_prefix: u8,
    /// IPv6 clients in one prefix of this length count as one.
    pub(crate) ipv6_prefix: u8,
}

/// What makes an answer the same as another for the limit.
#[derive(Debug, Clone, Copy)]
pub(crate) enum AnswerKind<'a> {
    /// Records for a name and type.
    Records(&'a Name, RecordType),
    /// NXDOMAIN or NODATA in the zone whose apex is this.
    Negative(&'a Name),
    /// Any error (REFUSED, FORMERR, NOTIMP, BADVERS...).
    Error,
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated: no records, TC set.
    Truncate,
    /// Send nothing.
    Drop,
}

/// The buckets.
pub(crate) struct RateLimiter {
    config: RateLimitConfig,
    keys: RandomState,
    started: Instant,
    shards: Box<[Mutex<Shard>]>,
}

struct Shard {
    buckets: Box<[Bucket]>,
    /// Counts the checks in this shard: the order in which buckets were last used.
    clock: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// The key's hash; 0 marks an unused bucket.
    key: u64,
    /// Answers that may still be sent now.
    tokens: f64,
    /// When `tokens` was last brought up to date (nanoseconds since the limiter started).
    updated: u64,
    /// When the bucket was last used, on its shard's clock.
    used: u64,
    /// Answers limited so far (for the slip).
    limited: u32,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("config", &self.config)
            .finish()
    }
}

impl RateLimiter {
    /// A limiter with every bucket free; `None` when `config` turns limiting off.
    pub(crate) fn new(config: RateLimitConfig) -> Option<Self> {
        if config.responses_per_second == 0 {
            return None;
        }
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    buckets: vec![Bucket::default(); SETS_PER_SHARD * WAYS].into_boxed_slice(),
                    clock: 0,
                })
            })
            .collect();
        Some(Self {
            config,
            keys: RandomState::new(),
            started: Instant::now(),
            shards,
        })
    }

    /// Decides whether an answer of `kind` to `client` is sent, at `now`.
    pub(crate) fn check(&self, client: IpAddr, kind: AnswerKind<'_>, now: Instant) -> Verdict {
        let key = self.key(client, kind);
        let now = u64::try_from(now.saturating_duration_since(self.started).as_nanos())
            .unwrap_or(u64::MAX);
        let rate = f64::from(self.config.responses_per_second);
        let shard = &self.shards[(key as usize) % SHARDS];
        let set = ((key >> 6) as usize) % SETS_PER_SHARD;
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        shard.clock += 1;
        let clock = shard.clock;
        let ways = &mut shard.buckets[set * WAYS..(set + 1) * WAYS];
        let bucket = match ways.iter().position(|b| b.key == key) {
            Some(found) => &mut ways[found],
            None => {
                // A new key: the least recently used bucket of the set, full.
                let oldest = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| (b.key != 0, b.used))
                    .map_or(0, |(i, _)| i);
                ways[oldest] = Bucket {
                    key,
                    tokens: rate,
                    updated: now,
                    used: clock,
                    limited: 0,
                };
                &mut ways[oldest]
            }
        };
        let elapsed = now.saturating_sub(bucket.updated) as f64 / 1e9;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.updated = now;
        bucket.used = clock;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        match self.config.slip {
            0 => Verdict::Drop,
            slip if bucket.limited % slip == 0 => Verdict::Truncate,
            _ => Verdict::Drop,
        }
    }

    /// The bucket key of an answer of `kind` to `client`'s prefix (never 0, the unused mark).
    fn key(&self, client: IpAddr, kind: AnswerKind<'_>) -> u64 {
        let mut hasher = self.keys.build_hasher();
        match client.to_canonical() {
            IpAddr::V4(v4) => {
                let bits = u32::from(v4) & prefix_mask_v4(self.config.ipv4_prefix);
                (4u8, bits).hash(&mut hasher);
            }
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & prefix_mask_v6(self.config.ipv6_prefix);
                (6u8, bits).hash(&mut hasher);
            }
        }
        match kind {
            AnswerKind::Records(name, qtype) => {
                0u8.hash(&mut hasher);
                hash_name(name, &mut hasher);
                u16::from(qtype).hash(&mut hasher);
            }
            AnswerKind::Negative(zone) => {
                1u8.hash(&mut hasher);
                hash_name(zone, &mut hasher);
            }
            AnswerKind::Error => 2u8.hash(&mut hasher),
        }
        hasher.finish().max(1)
    }
}

/// Hashes a name case-insensitively, label by label.
fn hash_name(name: &Name, hasher: &mut impl Hasher) {
    for label in name.iter() {
        label.len().hash(hasher);
        for byte in label {
            byte.to_ascii_lowercase().hash(hasher);
        }
    }
}

fn prefix_mask_v4(length: u8) -> u32 {
    match length {
        0 => 0,
        length => u32::MAX << (32 - u32::from(length.min(32))),
    }
}

fn prefix_mask_v6(length: u8) -> u128 {
    match length {
        0 => 0,
        length => u128::MAX << (128 - u32::from(length.min(128))),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config(responses_per_second: u32, slip: u32) -> RateLimitConfig {
        RateLimitConfig {
            responses_per_second,
            slip,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn name(text: &str) -> Name {
        Name::from_ascii(text).expect("a name")
    }

    /// The verdicts for `count` answers of `kind` to `client`, all at `at`.
    fn verdicts(
        limiter: &RateLimiter,
        client: &str,
        kind: AnswerKind<'_>,
        count: usize,
        at: Instant,
    ) -> Vec<Verdict> {
        (0..count)
            .map(|_| limiter.check(ip(client), kind, at))
            .collect()
    }

    #[test]
    fn a_burst_over_the_rate_is_dropped_with_every_second_one_truncated() {
        let limiter = RateLimiter::new(config(10, 2)).expect("on");
        let app = name("app.example.com.");
        let now = Instant::now();
        let got = verdicts(
            &limiter,
            "192.0.2.1",
            AnswerKind::Records(&app, RecordType::A),
            16,
            now,
        );
        let mut expected = vec![Verdict::Send; 10];
        expected.extend([
            Verdict::Drop,
            Verdict::Truncate,
            Verdict::Drop,
            Verdict::Truncate,
            Verdict::Drop,
            Verdict::Truncate,
        ]);
        assert_eq!(got, expected);
        // The bucket refills at the rate: a tenth of a second later, one more answer.
        let later = now + Duration::from_millis(100);
        let got = verdicts(
            &limiter,
            "192.0.2.1",
            AnswerKind::Records(&app, RecordType::A),
            2,
            later,
        );
        assert_eq!(got, [Verdict::Send, Verdict::Drop]);
    }

    #[test]
    fn slip_zero_drops_all_and_slip_one_truncates_all() {
        let now = Instant::now();
        let app = name("app.example.com.");
        let kind = AnswerKind::Records(&app, RecordType::A);
        let drop_all = RateLimiter::new(config(1, 0)).expect("on");
        assert_eq!(
            verdicts(&drop_all, "192.0.2.1", kind, 4, now),
            [Verdict::Send, Verdict::Drop, Verdict::Drop, Verdict::Drop]
        );
        let truncate_all = RateLimiter::new(config(1, 1)).expect("on");
        assert_eq!(
            verdicts(&truncate_all, "192.0.2.1", kind, 3, now),
            [Verdict::Send, Verdict::Truncate, Verdict::Truncate]
        );
    }

    #[test]
    fn a_rate_of_zero_turns_the_limiter_off() {
        assert!(RateLimiter::new(config(0, 2)).is_none());
    }

    #[test]
    fn clients_in_one_prefix_share_a_limit_and_other_prefixes_do_not() {
        let now = Instant::now();
        let app = name("app.example.com.");
        let kind = AnswerKind::Records(&app, RecordType::A);
        let table: &[(&str, &str, bool)] = &[
            ("192.0.2.1", "192.0.2.200", true),
            ("192.0.2.1", "192.0.3.1", false),
            ("127.0.0.2", "127.0.0.3", true),
            ("127.0.0.2", "127.0.1.2", false),
            ("2001:db8:0:ff::1", "2001:db8:0:ab::2", true),
            ("2001:db8:0:ff::1", "2001:db8:0:1ff::1", false),
            // An IPv4 client seen on a dual-stack socket is the same client.
            ("192.0.2.1", "::ffff:192.0.2.9", true),
        ];
        for (first, second, shared) in table {
            let limiter = RateLimiter::new(config(2, 0)).expect("on");
            assert_eq!(
                verdicts(&limiter, first, kind, 2, now),
                [Verdict::Send, Verdict::Send]
            );
            let expected = if *shared {
                Verdict::Drop
            } else {
                Verdict::Send
            };
            assert_eq!(
                limiter.check(ip(second), kind, now),
                expected,
                "{first} {second}"
            );
        }
    }

    #[test]
    fn answers_count_per_name_and_type_negative_ones_per_zone() {
        let now = Instant::now();
        let limiter = RateLimiter::new(config(1, 0)).expect("on");
        let (app, api, zone) = (
            name("app.example.com."),
            name("api.example.com."),
            name("example.com."),
        );
        let client = "192.0.2.1";
        for kind in [
            AnswerKind::Records(&app, RecordType::A),
            AnswerKind::Records(&app, RecordType::AAAA),
            AnswerKind::Records(&api, RecordType::A),
            AnswerKind::Negative(&zone),
            AnswerKind::Error,
        ] {
            assert_eq!(
                limiter.check(ip(client), kind, now),
                Verdict::Send,
                "{kind:?}"
            );
        }
        // The same records under another spelling are the same answer.
        let upper = name("APP.Example.COM.");
        assert_eq!(
            limiter.check(ip(client), AnswerKind::Records(&upper, RecordType::A), now),
            Verdict::Drop
        );
        assert_eq!(
            limiter.check(ip(client), AnswerKind::Negative(&zone), now),
            Verdict::Drop
        );
        assert_eq!(
            limiter.check(ip(client), AnswerKind::Error, now),
            Verdict::Drop
        );
    }

    #[test]
    fn memory_stays_fixed_under_many_keys_and_a_busy_key_keeps_its_bucket() {
        let now = Instant::now();
        let limiter = RateLimiter::new(config(5, 0)).expect("on");
        let app = name("app.example.com.");
        let kind = AnswerKind::Records(&app, RecordType::A);
        let busy = "198.51.100.7";
        assert_eq!(verdicts(&limiter, busy, kind, 6, now)[5], Verdict::Drop);
        // Four times as many other clients as there are buckets, each asking once; the busy
        // client keeps asking meanwhile. A bucket in use is not the least recently used of its
        // set, so the busy client stays limited instead of starting over with a full bucket.
        for i in 0..(4 * BUCKETS as u32) {
            let client = IpAddr::from(u32::to_be_bytes(0x0a00_0000 + (i << 8)));
            assert_eq!(limiter.check(client, kind, now), Verdict::Send);
            if i % 64 == 0 {
                assert_eq!(
                    limiter.check(ip(busy), kind, now),
                    Verdict::Drop,
                    "after {i}"
                );
            }
        }
        let buckets: usize = limiter
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
            .sum();
        assert_eq!(buckets, BUCKETS);
    }
}
