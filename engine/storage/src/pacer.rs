//! Smooth backpressure. Under sustained overload writers can go on only as
//! fast as persistence frees buffer space. Waiting at the hard limit
//! (`max_buffer_size`) until a whole generation is written turns that into
//! a freeze: no write is acknowledged for as long as one generation takes
//! to persist. Instead, once the buffer holds more than a soft limit, each
//! write is given a slot at the rate persistence has been freeing space, so
//! acks keep flowing at the sustainable rate and the buffer stays between
//! the soft and the hard limit. The hard limit remains as a backstop.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Weight of the newest measurement in the persist-rate average.
const SMOOTHING: f64 = 0.5;
/// No write waits longer than this for its slot (the estimate may be stale).
const MAX_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub(crate) struct Pacer {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes of buffer persistence frees per second, once measured.
    bytes_per_sec: Option<f64>,
    /// When the next paced write may go.
    next_slot: Option<Instant>,
}

impl Pacer {
    /// Persistence freed `bytes` of buffer in `took`.
    pub(crate) fn persisted(&self, bytes: usize, took: Duration) {
        if bytes == 0 || took.is_zero() {
            return;
        }
        let rate = bytes as f64 / took.as_secs_f64();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.bytes_per_sec = Some(match state.bytes_per_sec {
            Some(old) => old * (1.0 - SMOOTHING) + rate * SMOOTHING,
            None => rate,
        });
    }

    /// When a write of `bytes` may go, if it must wait: `None` below the
    /// soft limit or before persistence has been measured.
    pub(crate) fn slot(
        &self,
        bytes: usize,
        over_soft_limit: bool,
        now: Instant,
    ) -> Option<Instant> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !over_soft_limit {
            state.next_slot = None;
            return None;
        }
        let rate = state.bytes_per_sec?;
        let start = state
            .next_slot
            .map_or(now, |slot| slot.max(now))
            .min(now + MAX_DELAY);
        state.next_slot = Some(start + Duration::from_secs_f64(bytes as f64 / rate));
        (start > now).then_some(start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_spaced_at_the_persist_rate_over_the_soft_limit() {
        let pacer = Pacer::default();
        let now = Instant::now();
        // Not measured yet: nobody waits.
        assert_eq!(pacer.slot(1000, true, now), None);
        pacer.persisted(100 << 20, Duration::from_secs(1));
        // Under the soft limit: nobody waits.
        assert_eq!(pacer.slot(10 << 20, false, now), None);
        // Over it: 10 MiB writes at 100 MiB/s are 100 ms apart.
        assert_eq!(pacer.slot(10 << 20, true, now), None);
        let second = pacer.slot(10 << 20, true, now).unwrap();
        assert!((second - now).as_millis().abs_diff(100) <= 1);
        let third = pacer.slot(10 << 20, true, now).unwrap();
        assert!((third - now).as_millis().abs_diff(200) <= 1);
        // A stale estimate never holds a write longer than MAX_DELAY.
        for _ in 0..100 {
            let slot = pacer.slot(100 << 20, true, now).unwrap_or(now);
            assert!(slot <= now + MAX_DELAY);
        }
        // Back under the soft limit, the queue is forgotten.
        assert_eq!(pacer.slot(10 << 20, false, now), None);
        assert_eq!(pacer.slot(10 << 20, true, now), None);
    }
}
