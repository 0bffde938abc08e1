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

    /// Spends one of the peer's failures, or `Err(wait)` if none is left.
    /// Check and spend are one step, so concurrent attempts from one peer
    /// cannot all pass the check before any of them fails.
    pub fn try_spend(&self, peer: IpAddr) -> Result<(), Duration> {
        let peer = key(peer);
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        let allowance = match peers.get(&peer) {
            Some(bucket) => self.refilled(bucket, now),
            None => f64::from(self.config.burst),
        };
        if allowance < 1.0 {
            return Err(self.config.refill.mul_f64(1.0 - allowance));
        }
        if peers.len() >= MAX_PEERS && !peers.contains_key(&peer) {
            self.forget_some(&mut peers, now);
        }
        peers.insert(
            peer,
            Bucket {
                allowance: allowance - 1.0,
                updated: now,
            },
        );
        Ok(())
    }

    /// Gives back what [`Self::try_spend`] took: the attempt succeeded.
    pub fn refund(&self, peer: IpAddr) {
        let peer = key(peer);
        let now = Instant::now();
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = peers.get(&peer).copied() {
            let allowance = (self.refilled(&bucket, now) + 1.0).min(f64::from(self.config.burst));
            peers.insert(
                peer,
                Bucket {
                    allowance,
                    updated: now,
                },
            );
        }
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

/// The bucket a peer shares: its address, or for IPv6 its /64 (one host
/// commonly holds a whole /64 and could otherwise take a fresh bucket per
/// address).
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
        v4 => v4,
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
            assert!(limiter.try_spend(bad).is_ok());
        }
        let wait = limiter.try_spend(bad).unwrap_err();
        assert!(wait > Duration::from_secs(3500), "{wait:?}");
        assert!(limiter.try_spend(good).is_ok());
        limiter.refund(good);
        // A success gives its spend back: a peer that keeps succeeding is
        // never limited.
        for _ in 0..10 {
            assert!(limiter.try_spend(good).is_ok());
            limiter.refund(good);
        }
    }

    #[test]
    fn failures_are_forgiven_at_the_refill_rate() {
        let limiter = FailureLimiter::new(LimiterConfig {
            burst: 1,
            refill: Duration::from_secs(1),
        });
        let peer: IpAddr = "::1".parse().unwrap();
        assert!(limiter.try_spend(peer).is_ok());
        assert!(limiter.try_spend(peer).is_err());
        // Another address of the same /64 shares the bucket.
        assert!(limiter.try_spend("::2".parse().unwrap()).is_err());
        std::thread::sleep(Duration::from_millis(1100));
        assert!(limiter.try_spend(peer).is_ok());
    }

    #[test]
    fn memory_stays_bounded_under_many_peers() {
        let limiter = FailureLimiter::new(LimiterConfig {
            burst: 1,
            refill: Duration::from_secs(3600),
        });
        for i in 0..(MAX_PEERS as u32 * 2) {
            let _ = limiter.try_spend(IpAddr::from(i.to_be_bytes()));
        }
        assert!(limiter.peers.lock().unwrap().len() <= MAX_PEERS);
    }
}
