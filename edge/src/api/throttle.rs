//! `AuthThrottle`: failed authentications counted per client address (IPv6 by /64), a token
//! bucket each: a client that failed as many times as the limit within a minute gets 429 for
//! every request that needs a token, its right token included, until the bucket refills.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most this many client addresses are tracked; beyond it the ones whose bucket is full
/// again are forgotten, then (under a flood of addresses) the oldest.
const MAX_CLIENTS: usize = 65_536;

/// Failed authentications per client address.
#[derive(Debug)]
pub(crate) struct AuthThrottle {
    capacity: f64,
    refill_per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl AuthThrottle {
    /// A throttle that allows `per_minute` failures a minute from each client (at least one).
    pub(crate) fn new(per_minute: u32) -> Self {
        let capacity = f64::from(per_minute.max(1));
        Self {
            capacity,
            refill_per_second: capacity / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(wait)` when `client` has used up its failures: how long until it may try again.
    pub(crate) fn blocked(&self, client: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.get(&group(client))?;
        let tokens = self.refilled(bucket, now);
        (tokens < 1.0).then(|| Duration::from_secs_f64((1.0 - tokens) / self.refill_per_second))
    }

    /// Counts one failed authentication of `client`.
    pub(crate) fn fail(&self, client: IpAddr) {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= MAX_CLIENTS && !buckets.contains_key(&group(client)) {
            self.forget_idle(&mut buckets, now);
        }
        let bucket = buckets.entry(group(client)).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        let tokens = self.refilled(bucket, now);
        *bucket = Bucket {
            tokens: (tokens - 1.0).max(0.0),
            at: now,
        };
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        (bucket.tokens + elapsed * self.refill_per_second).min(self.capacity)
    }

    /// Drops the clients whose bucket is full again; if none is, the one seen longest ago.
    fn forget_idle(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| self.refilled(bucket, now) < self.capacity);
        if buckets.len() >= MAX_CLIENTS
            && let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, bucket)| bucket.at)
                .map(|(client, _)| *client)
        {
            buckets.remove(&oldest);
        }
    }
}

/// The address a client is counted under: IPv4 as it is, IPv6 by its /64 (one host usually
/// holds a whole /64).
fn group(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::from(octets)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_failure_within_a_minute_is_blocked_and_others_are_not() {
        let throttle = AuthThrottle::new(10);
        let client: IpAddr = "127.0.0.2".parse().expect("ip");
        let other: IpAddr = "127.0.0.1".parse().expect("ip");
        for _ in 0..10 {
            assert_eq!(throttle.blocked(client), None);
            throttle.fail(client);
        }
        let wait = throttle
            .blocked(client)
            .expect("blocked after ten failures");
        assert!(wait <= Duration::from_secs(6), "{wait:?}");
        assert_eq!(throttle.blocked(other), None);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let throttle = AuthThrottle::new(1);
        throttle.fail("2001:db8::1".parse().expect("ip"));
        assert!(
            throttle
                .blocked("2001:db8::ffff".parse().expect("ip"))
                .is_some()
        );
        assert!(
            throttle
                .blocked("2001:db8:0:1::1".parse().expect("ip"))
                .is_none()
        );
        throttle.fail("::ffff:10.0.0.1".parse().expect("ip"));
        assert!(throttle.blocked("10.0.0.1".parse().expect("ip")).is_some());
    }

    #[test]
    fn the_tracked_clients_are_bounded() {
        let throttle = AuthThrottle::new(1);
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            throttle.fail(IpAddr::from(i.to_be_bytes()));
        }
        let tracked = throttle.buckets.lock().map(|b| b.len()).unwrap_or(0);
        assert!(tracked <= MAX_CLIENTS, "{tracked}");
    }
}
