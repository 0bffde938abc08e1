//! Dynamic pre-filtering of events: lowers `high` to `low` where a lookup
//! table in the config says a page is not wanted — a service still in
//! testing, a host in its maintenance window — and says why in the event's
//! `priority_reason` tag, so the lowered alert still reaches chat with its
//! reason while nobody is woken.
//!
//! Runs in the pipeline of `weir_events` (`[[pipelines.weir_events.stages]]`),
//! which Weir runs on every event before the state machine sees it.
//!
//! Config: one entry per rule, `lower.<tag>=<value>`, whose value is the
//! reason, optionally followed by ` during <start>/<end>` (RFC 3339): the
//! rule then holds only for events whose time falls in that window.
//!
//! ```toml
//! config = { "lower.service_name=checkout-beta" = "in testing",
//!            "lower.host=db-1" = "maintenance during 2026-12-24T02:00:00Z/2026-12-24T06:00:00Z" }
//! ```
//!
//! A malformed entry is refused at init, so a typo cannot leave pages on
//! (or off) unnoticed.

use weir_sdk::{Changes, Config, Enricher, Event};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    tag: String,
    value: String,
    reason: String,
    /// Nanoseconds since the epoch, start inclusive, end exclusive.
    window: Option<(i64, i64)>,
}

fn parse_time(what: &str, text: &str) -> Result<i64, String> {
    let at = humantime::parse_rfc3339_weak(text.trim())
        .map_err(|e| format!("{what}: {text:?} is not an RFC 3339 time: {e}"))?;
    let ns = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("{what}: {text:?} is before 1970"))?
        .as_nanos();
    i64::try_from(ns).map_err(|_| format!("{what}: {text:?} is out of range"))
}

fn parse_rule(key: &str, text: &str) -> Result<Rule, String> {
    let what = format!("lower.{key}");
    let (tag, value) = key
        .split_once('=')
        .filter(|(t, v)| !t.is_empty() && !v.is_empty())
        .ok_or_else(|| format!("{what}: the key must be lower.<tag>=<value>"))?;
    let (reason, window) = match text.rsplit_once(" during ") {
        Some((reason, window)) => {
            let (start, end) = window
                .split_once('/')
                .ok_or_else(|| format!("{what}: a window is <start>/<end>"))?;
            let (start, end) = (parse_time(&what, start)?, parse_time(&what, end)?);
            if end <= start {
                return Err(format!("{what}: the window ends before it starts"));
            }
            (reason, Some((start, end)))
        }
        None => (text, None),
    };
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(format!("{what}: say why (the value is the reason)"));
    }
    Ok(Rule {
        tag: tag.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
        window,
    })
}

pub struct PriorityPolicy {
    rules: Vec<Rule>,
}

impl PriorityPolicy {
    fn lowered_by(&self, event: &Event<'_>) -> Option<&Rule> {
        let time = event.time_ns();
        self.rules.iter().find(|rule| {
            event.tag(&rule.tag) == Some(rule.value.as_str())
                && rule
                    .window
                    .is_none_or(|(start, end)| (start..end).contains(&time))
        })
    }
}

impl Enricher for PriorityPolicy {
    fn init(config: &Config) -> Result<Self, String> {
        let rules = config
            .with_prefix("lower.")
            .map(|(key, text)| parse_rule(key, text))
            .collect::<Result<Vec<_>, String>>()?;
        if rules.is_empty() {
            return Err("no rules: give lower.<tag>=<value> entries".into());
        }
        weir_sdk::log::info(&format!("{} priority rules", rules.len()));
        Ok(Self { rules })
    }

    fn enrich(&mut self, event: &Event<'_>, changes: &mut Changes<'_>) -> Result<(), String> {
        if event.tag("priority") != Some("high") {
            return Ok(());
        }
        if let Some(rule) = self.lowered_by(event) {
            changes
                .set_tag("priority", "low")
                .set_tag("priority_reason", &rule.reason);
        }
        Ok(())
    }
}

weir_sdk::export_enricher!(PriorityPolicy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_bad_ones_are_refused() {
        let rule = parse_rule(
            "host=db-1",
            "maintenance during 2026-12-24T02:00:00Z/2026-12-24T06:00:00Z",
        )
        .unwrap();
        assert_eq!(rule.reason, "maintenance");
        let (start, end) = rule.window.unwrap();
        assert_eq!(end - start, 4 * 3600 * 1_000_000_000);
        assert_eq!(
            parse_rule("service_name=beta", "in testing")
                .unwrap()
                .window,
            None
        );
        for (key, text) in [
            ("host", "x"),
            ("=v", "x"),
            ("host=", "x"),
            ("host=a", ""),
            ("host=a", "x during tomorrow"),
            (
                "host=a",
                "x during 2026-12-24T06:00:00Z/2026-12-24T02:00:00Z",
            ),
        ] {
            assert!(parse_rule(key, text).is_err(), "{key} {text}");
        }
        assert!(PriorityPolicy::init(&Config::from_pairs([("other", "x")])).is_err());
    }
}
