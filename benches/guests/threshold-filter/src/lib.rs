//! The filter of the boundary-encoding bench, written the way a plugin
//! author would: keep a check unless it is healthy and fast. Reads two
//! fields per event, `status` and `response_ms`.

use weir_sdk::{Config, Event, Filter};

pub struct Threshold {
    slow_ms: f64,
}

impl Filter for Threshold {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Self {
            slow_ms: config.parse("slow-ms")?.unwrap_or(500.0),
        })
    }

    fn keep(&mut self, event: &Event<'_>) -> bool {
        event.field_str("status") != Some("healthy")
            || event
                .field_f64("response_ms")
                .is_some_and(|ms| ms > self.slow_ms)
    }
}

weir_sdk::export_filter!(Threshold);
