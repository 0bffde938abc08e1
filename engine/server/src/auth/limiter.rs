//! Failed authentications per peer address: a token bucket each. A peer
//! may fail `burst` times in a row, then once per `refill`; past that its
//! attempts are refused before any hash is computed, so guessing tokens is
//! slow and cannot make the server burn CPU on argon2.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Peers remembered at most; past it, peers whose bucket has refilled are
/// forgotten, then the longest-idle ones.
const MAX_PEERS: usize = 16_384;

#[derive(Debug, Clone, Copy)]
pub struct LimiterConfig {
    pub burst: u32,
    pub refill: Duration,
}

pub struct FailureLimiter {
    config: LimiterConfig,
    peers: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    /// Failures still allowed right now (fractional while refilling).
    allowance: f64,
    updated: Instant,
}

impl FailureLimiter {
    pub fn new(config: LimiterConfig) -> Self {
        Self {
            config: LimiterConfig {
                burst: config.burst.max(1),
                refill: config.refill.max(Duration::from_millis(1)),
            },
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while the peer has no failures left to spend.
    pub fn check(&self, peer: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peers.get(&peer) {
            Some(bucket) => {
                let allowance = self.refilled(bucket, now);
                if allowance >= 1.0 {
                    Ok(())
                } else {
                    Err(self.config.refill.mul_f64(1.0 - allowance))
                }
            }
            None => Ok(()),
        }
    }

    /// Spends one of the peer's failures.
    pub fn record_failure(&self, peer: IpAddr) {
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            self.forget_some(&mut peers, now);
        }
        let burst = f64::from(self.config.burst);
        let allowance = peers
            .get(&peer)
            .map_or(burst, |bucket| self.refilled(bucket, now));
        peers.insert(
            peer,
            Bucket {
                allowance: (allowance - 1.0).max(0.0),
                updated: now,
            },
        );
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let earned =
            now.duration_since(bucket.updated).as_secs_f64() / self.config.refill.as_secs_f64();
        (bucket.allowance + earned).min(f64::from(self.config.burst))
    }

    fn forget_some(&self, peers: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let burst = f64::from(self.config.burst);
        peers.retain(|_, bucket| self.refilled(bucket, now) < burst);
        if peers.len() >= MAX_PEERS {
            // Everyone is still limited: drop the longest idle half.
            let mut idle: Vec<(Instant, IpAddr)> =
                peers.iter().map(|(ip, b)| (b.updated, *ip)).collect();
            idle.sort_unstable();
            for (_, ip) in idle.iter().take(idle.len() / 2) {
                peers.remove(ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_is_refused_after_its_burst_and_others_are_not() {
        let limiter = FailureLimiter::new(LimiterConfig {
            burst: 3,
            refill: Duration::from_secs(3600),
        });
        let bad: IpAddr = "10.0.0.1".parse().unwrap();
        let good: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(limiter.check(bad).is_ok());
            limiter.record_failure(bad);
        }
        let wait = limiter.check(bad).unwrap_err();
        assert!(wait > Duration::from_secs(3500), "{wait:?}");
        assert!(limiter.check(good).is_ok());
    }

    #[test]
    fn failures_are_forgiven_at_the_refill_rate() {
        let limiter = FailureLimiter::new(LimiterConfig {
            burst: 1,
            refill: Duration::from_millis(50),
        });
        let peer: IpAddr = "::1".parse().unwrap();
        limiter.record_failure(peer);
        assert!(limiter.check(peer).is_err());
        std::thread::sleep(Duration::from_millis(60));
        assert!(limiter.check(peer).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_many_peers() {
        let limiter = FailureLimiter::new(LimiterConfig {
            burst: 1,
            refill: Duration::from_secs(3600),
        });
        for i in 0..(MAX_PEERS as u32 * 2) {
            limiter.record_failure(IpAddr::from(i.to_be_bytes()));
        }
        assert!(limiter.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
