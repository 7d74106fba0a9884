//! Token buckets for `rate_limit`: one per hostname, or one per client of a hostname (an IPv4
//! address or an IPv6 /64, [`ClientKey`]). Pure arithmetic on the `Instant` the caller passes
//! in. Memory stays bounded: a full shard forgets the fullest of a few buckets picked at random
//! (one that has refilled carries no information), in constant time under the shard's lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use postern_schema::api::{RateLimit, RateLimitKey};
use rand::RngExt;

use crate::client::ClientKey;

/// Per-client buckets of one hostname live in this many independently locked shards.
const SHARDS: usize = 16;

/// At most this many per-client buckets per hostname and policy (about 4 MiB); when full, the
/// fullest of [`EVICTION_SAMPLE`] buckets goes (forgetting it loses the least).
pub(crate) const MAX_TRACKED_IPS: usize = 65_536;

/// How many buckets a full shard looks at to pick the one it forgets.
const EVICTION_SAMPLE: usize = 8;

/// The longest `Retry-After` ever announced.
const MAX_RETRY_AFTER_SECS: u64 = 86_400;

/// Refill rate and capacity of a bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limit {
    per_second: f64,
    burst: f64,
}

impl Limit {
    /// The limit a policy declares; `burst` defaults to `requests_per_second` rounded up.
    pub(crate) fn from_spec(spec: &RateLimit) -> Self {
        let per_second = if spec.requests_per_second.is_finite() && spec.requests_per_second > 0.0 {
            spec.requests_per_second
        } else {
            // The schema rejects this; refill as slowly as is still meaningful.
            1e-6
        };
        let burst = spec.burst.unwrap_or_else(|| spec.default_burst()).max(1);
        Self {
            per_second,
            burst: f64::from(burst),
        }
    }

    /// How long until a bucket holding `tokens` has one whole token.
    fn wait_for_one(&self, tokens: f64) -> Duration {
        let seconds = ((1.0 - tokens) / self.per_second).clamp(0.0, MAX_RETRY_AFTER_SECS as f64);
        Duration::from_secs_f64(seconds)
    }
}

/// A request over the limit: when to try again, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub(crate) retry_after_secs: u64,
}

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn full(limit: &Limit, now: Instant) -> Self {
        Self {
            tokens: limit.burst,
            updated: now,
        }
    }

    /// Takes one token, or says how long until one is there. A `now` older than the last update
    /// (callers read the clock before taking the lock) counts as no time passed.
    pub(crate) fn take(&mut self, limit: &Limit, now: Instant) -> Result<(), Exceeded> {
        let elapsed = now.saturating_duration_since(self.updated);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst);
        if now > self.updated {
            self.updated = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        let wait = limit.wait_for_one(self.tokens);
        let mut secs = wait.as_secs();
        if wait.subsec_nanos() > 0 {
            secs += 1;
        }
        Err(Exceeded {
            retry_after_secs: secs.clamp(1, MAX_RETRY_AFTER_SECS),
        })
    }

    /// The tokens the bucket would hold at `now`.
    fn level(&self, limit: &Limit, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated);
        (self.tokens + elapsed.as_secs_f64() * limit.per_second).min(limit.burst)
    }
}

/// The buckets of one rate-limited policy across the hostnames it guards. Kept across catalog
/// snapshots as long as the policy's `rate_limit` does not change.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: Limit,
    per: RateLimitKey,
    max_ips_per_shard: usize,
    hosts: RwLock<HashMap<Box<str>, Arc<HostBuckets>>>,
    shard_hasher: RandomState,
}

#[derive(Debug)]
enum HostBuckets {
    /// `per = "hostname"`: everyone shares one bucket.
    Shared(Mutex<Option<TokenBucket>>),
    /// `per = "client_ip"`: one bucket per client.
    PerIp(Box<[Mutex<Shard>]>),
}

/// The buckets of the clients that hash to one shard: kept in a dense list (so that a few can
/// be picked at random in constant time) with an index by client.
#[derive(Debug, Default)]
struct Shard {
    index: HashMap<ClientKey, usize>,
    buckets: Vec<(ClientKey, TokenBucket)>,
}

impl Shard {
    /// Takes a token from `client`'s bucket, making one (full) if it has none; a shard holding
    /// `max` buckets first forgets one.
    fn take(
        &mut self,
        client: ClientKey,
        limit: &Limit,
        now: Instant,
        max: usize,
    ) -> Result<(), Exceeded> {
        if let Some(bucket) = self
            .index
            .get(&client)
            .and_then(|at| self.buckets.get_mut(*at))
        {
            return bucket.1.take(limit, now);
        }
        if self.buckets.len() >= max {
            self.evict(limit, now);
        }
        let mut bucket = TokenBucket::full(limit, now);
        let taken = bucket.take(limit, now);
        self.index.insert(client, self.buckets.len());
        self.buckets.push((client, bucket));
        taken
    }

    /// Forgets the fullest of [`EVICTION_SAMPLE`] buckets in a row from a random place (all of
    /// them when the shard holds fewer): clients who spent their burst stay limited under a
    /// flood of new ones, whose buckets are fuller. Constant time, whatever the shard holds.
    fn evict(&mut self, limit: &Limit, now: Instant) {
        let len = self.buckets.len();
        if len == 0 {
            return;
        }
        let start = rand::rng().random_range(0..len);
        let mut victim = start;
        let mut fullest = f64::MIN;
        for offset in 0..EVICTION_SAMPLE.min(len) {
            let at = (start + offset) % len;
            let level = self.buckets[at].1.level(limit, now);
            if level > fullest {
                fullest = level;
                victim = at;
            }
        }
        let (gone, _) = self.buckets.swap_remove(victim);
        self.index.remove(&gone);
        if let Some((moved, _)) = self.buckets.get(victim) {
            self.index.insert(*moved, victim);
        }
    }
}

impl RateLimiter {
    pub(crate) fn new(spec: &RateLimit) -> Self {
        Self::with_capacity(spec, MAX_TRACKED_IPS)
    }

    /// A limiter that tracks at most about `max_ips` clients per hostname.
    pub(crate) fn with_capacity(spec: &RateLimit, max_ips: usize) -> Self {
        Self {
            limit: Limit::from_spec(spec),
            per: spec.per.unwrap_or(RateLimitKey::ClientIp),
            max_ips_per_shard: max_ips.div_ceil(SHARDS).max(1),
            hosts: RwLock::new(HashMap::new()),
            shard_hasher: RandomState::new(),
        }
    }

    /// Does this limiter implement `spec` (so its buckets may survive a policy update)?
    pub(crate) fn implements(&self, spec: &RateLimit) -> bool {
        self.limit == Limit::from_spec(spec)
            && self.per == spec.per.unwrap_or(RateLimitKey::ClientIp)
    }

    /// Takes a token for a request to `hostname` from `client`.
    pub(crate) fn take(
        &self,
        hostname: &str,
        client: ClientKey,
        now: Instant,
    ) -> Result<(), Exceeded> {
        let host = self.host(hostname);
        match host.as_ref() {
            HostBuckets::Shared(bucket) => {
                let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
                bucket
                    .get_or_insert_with(|| TokenBucket::full(&self.limit, now))
                    .take(&self.limit, now)
            }
            HostBuckets::PerIp(shards) => {
                let index = (self.shard_hasher.hash_one(client) as usize) % shards.len();
                let mut shard = shards[index].lock().unwrap_or_else(|p| p.into_inner());
                shard.take(client, &self.limit, now, self.max_ips_per_shard)
            }
        }
    }

    /// Forgets the buckets of hostnames that `keep` rejects (hostnames deleted or detached).
    pub(crate) fn retain_hosts(&self, keep: impl Fn(&str) -> bool) {
        let mut hosts = self.hosts.write().unwrap_or_else(|p| p.into_inner());
        hosts.retain(|name, _| keep(name));
    }

    /// How many per-client buckets `hostname` holds (for tests and debugging).
    #[cfg(test)]
    pub(crate) fn tracked_ips(&self, hostname: &str) -> usize {
        let hosts = self.hosts.read().unwrap_or_else(|p| p.into_inner());
        match hosts.get(hostname).map(|h| h.as_ref()) {
            Some(HostBuckets::PerIp(shards)) => shards
                .iter()
                .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).buckets.len())
                .sum(),
            _ => 0,
        }
    }

    fn host(&self, hostname: &str) -> Arc<HostBuckets> {
        if let Some(host) = self
            .hosts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hostname)
        {
            return host.clone();
        }
        let mut hosts = self.hosts.write().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(hostname.into())
            .or_insert_with(|| {
                Arc::new(match self.per {
                    RateLimitKey::Hostname => HostBuckets::Shared(Mutex::new(None)),
                    RateLimitKey::ClientIp => HostBuckets::PerIp(
                        (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
                    ),
                })
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(per_second: f64, burst: u32, per: RateLimitKey) -> RateLimit {
        RateLimit {
            requests_per_second: per_second,
            burst: Some(burst),
            per: Some(per),
        }
    }

    fn ip(text: &str) -> ClientKey {
        ClientKey::of(text.parse().expect("test address"))
    }

    fn v4(bits: u32) -> ClientKey {
        ClientKey::of(std::net::IpAddr::from(std::net::Ipv4Addr::from(bits)))
    }

    fn passed(
        limiter: &RateLimiter,
        host: &str,
        client: ClientKey,
        now: Instant,
        n: usize,
    ) -> usize {
        (0..n)
            .filter(|_| limiter.take(host, client, now).is_ok())
            .count()
    }

    #[test]
    fn bucket_allows_the_burst_then_refills_at_the_rate() {
        let limit = Limit::from_spec(&spec(10.0, 5, RateLimitKey::ClientIp));
        let start = Instant::now();
        let mut bucket = TokenBucket::full(&limit, start);
        for _ in 0..5 {
            assert_eq!(bucket.take(&limit, start), Ok(()));
        }
        assert_eq!(
            bucket.take(&limit, start),
            Err(Exceeded {
                retry_after_secs: 1
            })
        );
        // 100 ms later exactly one token has come back.
        let later = start + Duration::from_millis(100);
        assert_eq!(bucket.take(&limit, later), Ok(()));
        assert!(bucket.take(&limit, later).is_err());
        // After a long pause the bucket holds the burst again, not more.
        let much_later = later + Duration::from_secs(60);
        let passed = (0..20)
            .filter(|_| bucket.take(&limit, much_later).is_ok())
            .count();
        assert_eq!(passed, 5);
    }

    #[test]
    fn retry_after_is_whole_seconds_and_at_least_one() {
        let table = [
            // (rate, burst, expected Retry-After once empty)
            (50.0, 50, 1),
            (1.0, 1, 1),
            (0.5, 1, 2),
            (0.1, 1, 10),
            (0.3, 1, 4),
        ];
        for (rate, burst, want) in table {
            let limit = Limit::from_spec(&spec(rate, burst, RateLimitKey::ClientIp));
            let now = Instant::now();
            let mut bucket = TokenBucket::full(&limit, now);
            for _ in 0..burst {
                assert!(bucket.take(&limit, now).is_ok());
            }
            assert_eq!(
                bucket.take(&limit, now),
                Err(Exceeded {
                    retry_after_secs: want
                }),
                "rate {rate}"
            );
        }
    }

    #[test]
    fn a_clock_that_goes_backwards_adds_no_tokens() {
        let limit = Limit::from_spec(&spec(1.0, 1, RateLimitKey::ClientIp));
        let start = Instant::now() + Duration::from_secs(10);
        let mut bucket = TokenBucket::full(&limit, start);
        assert!(bucket.take(&limit, start).is_ok());
        assert!(bucket.take(&limit, start - Duration::from_secs(5)).is_err());
        assert!(
            bucket
                .take(&limit, start + Duration::from_millis(999))
                .is_err()
        );
        assert!(bucket.take(&limit, start + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn client_ips_have_separate_buckets() {
        let limiter = RateLimiter::new(&spec(50.0, 50, RateLimitKey::ClientIp));
        let now = Instant::now();
        let a = ip("127.0.0.2");
        let b = ip("127.0.0.3");
        assert_eq!(passed(&limiter, "app.example.com", a, now, 200), 50);
        assert_eq!(passed(&limiter, "app.example.com", b, now, 10), 10);
        // Another hostname guarded by the same policy has its own buckets.
        assert_eq!(passed(&limiter, "api.example.com", a, now, 10), 10);
        let later = now + Duration::from_secs(1);
        assert_eq!(passed(&limiter, "app.example.com", a, later, 200), 50);
    }

    #[test]
    fn per_hostname_buckets_are_shared_by_every_client() {
        let limiter = RateLimiter::new(&spec(10.0, 10, RateLimitKey::Hostname));
        let now = Instant::now();
        assert_eq!(
            passed(&limiter, "app.example.com", ip("127.0.0.2"), now, 6),
            6
        );
        assert_eq!(
            passed(&limiter, "app.example.com", ip("127.0.0.3"), now, 6),
            4
        );
        assert_eq!(passed(&limiter, "app.example.com", ip("::1"), now, 1), 0);
        assert_eq!(passed(&limiter, "api.example.com", ip("::1"), now, 1), 1);
    }

    #[test]
    fn per_ip_memory_is_bounded_and_idle_buckets_go_first() {
        let limiter = RateLimiter::with_capacity(&spec(1.0, 2, RateLimitKey::ClientIp), 64);
        let host = "app.example.com";
        let start = Instant::now();
        for i in 0..10_000u32 {
            assert!(limiter.take(host, v4(0x0a00_0000 + i), start).is_ok());
        }
        assert!(
            limiter.tracked_ips(host) <= 64 + SHARDS,
            "{}",
            limiter.tracked_ips(host)
        );

        // A client that has used its burst stays limited while idle clients are evicted.
        let busy = ip("192.0.2.1");
        let t = start + Duration::from_secs(10);
        assert_eq!(passed(&limiter, host, busy, t, 5), 2);
        for i in 0..1_000u32 {
            let _ = limiter.take(host, v4(0x0b00_0000 + i), t + Duration::from_millis(1));
        }
        assert!(
            limiter
                .take(host, busy, t + Duration::from_millis(2))
                .is_err()
        );
        assert!(limiter.tracked_ips(host) <= 64 + SHARDS);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let limiter = RateLimiter::new(&spec(1.0, 5, RateLimitKey::ClientIp));
        let now = Instant::now();
        let host = "app.example.com";
        let rotating = (0..2_000u32)
            .filter(|i| {
                let address = format!("2001:db8:1:2::{:x}", i + 1);
                limiter.take(host, ip(&address), now).is_ok()
            })
            .count();
        assert_eq!(rotating, 5, "2,000 addresses of one /64 share one bucket");
        assert_eq!(passed(&limiter, host, ip("2001:db8:1:3::1"), now, 10), 5);
    }

    #[test]
    fn a_full_shard_forgets_a_bucket_in_constant_time() {
        // Every new client of a flood lands in a full shard; each eviction looks at a few
        // buckets only, so a flood of 200,000 costs about what 200,000 hits cost.
        let limiter = RateLimiter::with_capacity(&spec(1.0, 5, RateLimitKey::ClientIp), 65_536);
        let host = "app.example.com";
        let now = Instant::now();
        let started = Instant::now();
        for i in 0..200_000u32 {
            let _ = limiter.take(host, v4(0x0c00_0000 + i), now);
        }
        let took = started.elapsed();
        assert!(limiter.tracked_ips(host) <= 65_536 + SHARDS);
        assert!(
            took < Duration::from_secs(5),
            "200,000 new clients into full shards took {took:?}"
        );
    }

    #[test]
    fn limiters_know_which_spec_they_implement() {
        let limiter = RateLimiter::new(&spec(5.0, 5, RateLimitKey::ClientIp));
        assert!(limiter.implements(&spec(5.0, 5, RateLimitKey::ClientIp)));
        assert!(!limiter.implements(&spec(5.0, 6, RateLimitKey::ClientIp)));
        assert!(!limiter.implements(&spec(5.0, 5, RateLimitKey::Hostname)));
        let defaulted = RateLimit {
            requests_per_second: 5.0,
            burst: None,
            per: None,
        };
        assert!(limiter.implements(&defaulted));
    }

    #[test]
    fn forgotten_hosts_start_afresh() {
        let limiter = RateLimiter::new(&spec(1.0, 1, RateLimitKey::Hostname));
        let now = Instant::now();
        let client = ip("127.0.0.2");
        assert!(limiter.take("a.example.com", client, now).is_ok());
        assert!(limiter.take("a.example.com", client, now).is_err());
        limiter.retain_hosts(|h| h != "a.example.com");
        assert!(limiter.take("a.example.com", client, now).is_ok());
    }
}
