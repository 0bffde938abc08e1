//! Passes an event only when its series' status differs from the last one
//! seen for that series — "static pre-filtering at the edge": a check that
//! reports `healthy` every ten seconds for a week becomes one event.
//!
//! Config:
//! - `key`: comma-separated tags that identify a series (default `service_name`);
//! - `status`: the tag or field holding the status (default `status`).
//!
//! The first event of a series always passes. Events without a status pass
//! untouched (they are not state changes this filter understands). State is
//! kept in the instance, so it lasts until the plugin is reloaded.

use std::collections::HashMap;

use weir_sdk::{Config, Event, Filter};

pub struct StateChange {
    key: Vec<String>,
    status: String,
    last: HashMap<String, String>,
}

impl Filter for StateChange {
    fn init(config: &Config) -> Result<Self, String> {
        let key = config.list("key", "service_name");
        if key.is_empty() {
            return Err("config key \"key\" names no tags".into());
        }
        Ok(Self {
            key,
            status: config.get_or("status", "status").to_string(),
            last: HashMap::new(),
        })
    }

    fn keep(&mut self, event: &Event<'_>) -> bool {
        let Some(status) = event.value(&self.status).map(|v| v.to_string()) else {
            return true;
        };
        let series = event.series(&self.key);
        match self.last.get_mut(&series) {
            Some(last) if *last == status => false,
            Some(last) => {
                *last = status;
                true
            }
            None => {
                self.last.insert(series, status);
                true
            }
        }
    }
}

weir_sdk::export_filter!(StateChange);

#[cfg(test)]
mod tests {
    use weir_sdk::{EventsBuilder, testing};

    use super::*;

    #[test]
    fn passes_only_changes_per_series_across_batches() {
        let mut filter = StateChange::init(&Config::default()).unwrap();
        let mut first = EventsBuilder::new();
        for (service, status) in [
            ("api", "healthy"),
            ("db", "healthy"),
            ("api", "healthy"),
            ("api", "unhealthy"),
        ] {
            first
                .event("checks", 1)
                .tag("service_name", service)
                .tag("status", status);
        }
        let first = first.finish().unwrap();
        assert_eq!(testing::filter(&mut filter, &first[0]).unwrap(), [0, 1, 3]);

        let mut second = EventsBuilder::new();
        second
            .event("checks", 2)
            .tag("service_name", "api")
            .tag("status", "unhealthy");
        second
            .event("checks", 2)
            .tag("service_name", "db")
            .tag("status", "unhealthy");
        second.event("checks", 2).tag("service_name", "web");
        let second = second.finish().unwrap();
        assert_eq!(testing::filter(&mut filter, &second[0]).unwrap(), [1, 2]);
    }

    #[test]
    fn an_empty_key_is_refused() {
        let err = StateChange::init(&Config::from_pairs([("key", " , ")]))
            .err()
            .unwrap();
        assert!(err.contains("names no tags"), "{err}");
    }
}
