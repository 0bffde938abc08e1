//! Ignore-flap: a state change passes only once it has held for `min-age`.
//!
//! Per series (config `key`, comma-separated tags, default `service_name`),
//! the filter remembers the confirmed status (config `status`, default
//! `status`). An event with the confirmed status passes. An event with
//! another status starts (or continues) a pending change; it is dropped
//! until an event shows the new status has held for at least `min-age` since
//! it was first seen, and from that event on the new status is confirmed
//! and passes. A flap — unhealthy for less than `min-age`, then healthy
//! again — never gets through.
//!
//! Time is the events' own timestamps (a plugin has no clock), so the
//! decision does not depend on when batches arrive. The first event of a
//! series confirms its status. `min-age` is a duration such as `30s`,
//! `5m`, `250ms` or `1h`.

use std::collections::HashMap;

use weir_sdk::{Config, Event, Filter};

pub struct Flap {
    key: Vec<String>,
    status: String,
    min_age_ns: i64,
    series: HashMap<String, Series>,
}

struct Series {
    confirmed: String,
    pending: Option<(String, i64)>,
}

/// Parses `250ms`, `30s`, `5m`, `1h` into nanoseconds.
pub fn parse_duration_ns(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("duration {text:?}: expected a number and a unit (ms, s, m, h)"))?;
    let unit_ns: i64 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(format!("duration {text:?}: unit must be ms, s, m or h")),
    };
    number
        .checked_mul(unit_ns)
        .ok_or_else(|| format!("duration {text:?} is too long"))
}

impl Filter for Flap {
    fn init(config: &Config) -> Result<Self, String> {
        let key = config.list("key", "service_name");
        if key.is_empty() {
            return Err("config key \"key\" names no tags".into());
        }
        Ok(Self {
            key,
            status: config.get_or("status", "status").to_string(),
            min_age_ns: parse_duration_ns(config.require("min-age")?)?,
            series: HashMap::new(),
        })
    }

    fn keep(&mut self, event: &Event<'_>) -> bool {
        let Some(status) = event.value(&self.status).map(|v| v.to_string()) else {
            return true;
        };
        let id = event.series(&self.key);
        let now = event.time_ns();
        let Some(series) = self.series.get_mut(&id) else {
            self.series.insert(
                id,
                Series {
                    confirmed: status,
                    pending: None,
                },
            );
            return true;
        };
        if series.confirmed == status {
            series.pending = None;
            return true;
        }
        let since = match &series.pending {
            Some((pending, since)) if *pending == status => *since,
            _ => {
                series.pending = Some((status.clone(), now));
                now
            }
        };
        if now.saturating_sub(since) >= self.min_age_ns {
            series.confirmed = status;
            series.pending = None;
            true
        } else {
            false
        }
    }
}

weir_sdk::export_filter!(Flap);

#[cfg(test)]
mod tests {
    use weir_sdk::{EventsBuilder, testing};

    use super::*;

    const S: i64 = 1_000_000_000;

    fn run(filter: &mut Flap, events: &[(i64, &str)]) -> Vec<usize> {
        let mut b = EventsBuilder::new();
        for (t, status) in events {
            b.event("checks", *t)
                .tag("service_name", "api")
                .tag("status", status);
        }
        testing::filter(filter, &b.finish().unwrap()[0]).unwrap()
    }

    #[test]
    fn flaps_are_ignored_and_lasting_changes_pass_once_old_enough() {
        let mut f = Flap::init(&Config::from_pairs([("min-age", "30s")])).unwrap();
        // Healthy, a 20 s flap to unhealthy, healthy again: the flap never passes.
        assert_eq!(
            run(
                &mut f,
                &[
                    (0, "healthy"),
                    (10 * S, "unhealthy"),
                    (30 * S, "unhealthy"),
                    (40 * S, "healthy")
                ]
            ),
            [0, 3]
        );
        // A lasting outage passes from the event where it has held 30 s, across batches.
        assert_eq!(
            run(&mut f, &[(50 * S, "unhealthy"), (70 * S, "unhealthy")]),
            Vec::<usize>::new()
        );
        assert_eq!(
            run(
                &mut f,
                &[
                    (80 * S, "unhealthy"),
                    (90 * S, "unhealthy"),
                    (95 * S, "healthy")
                ]
            ),
            [0, 1]
        );
    }

    #[test]
    fn config_is_checked() {
        assert!(
            Flap::init(&Config::default())
                .err()
                .unwrap()
                .contains("min-age")
        );
        assert!(Flap::init(&Config::from_pairs([("min-age", "5 parsecs")])).is_err());
        assert_eq!(parse_duration_ns("250ms").unwrap(), 250_000_000);
    }
}
