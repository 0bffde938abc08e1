//! Adds `team`, `channel` and `priority` tags from a lookup table in the
//! plugin's config.
//!
//! Config:
//! - `key`: the tag naming the service (default `service_name`);
//! - `owner.<service>`: `team=<team>,channel=<channel>,priority=<high|low>`;
//! - `default` (optional): the same, for services without an entry. Without
//!   it, such events pass unchanged.
//!
//! Priorities are Weir's two: `high` (page) and `low` (ticket); anything
//! else is refused at init, so a typo cannot silently downgrade a page.

use std::collections::HashMap;

use weir_sdk::{Changes, Config, Enricher, Event};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    team: String,
    channel: String,
    priority: String,
}

fn parse_owner(what: &str, text: &str) -> Result<Owner, String> {
    let mut team = None;
    let mut channel = None;
    let mut priority = None;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| format!("{what}: expected key=value, got {item:?}"))?;
        let slot = match k.trim() {
            "team" => &mut team,
            "channel" => &mut channel,
            "priority" => &mut priority,
            other => {
                return Err(format!(
                    "{what}: unknown key {other:?} (team, channel, priority)"
                ));
            }
        };
        *slot = Some(v.trim().to_string());
    }
    let priority = priority.ok_or_else(|| format!("{what}: missing priority"))?;
    if priority != "high" && priority != "low" {
        return Err(format!("{what}: priority {priority:?} must be high or low"));
    }
    Ok(Owner {
        team: team.ok_or_else(|| format!("{what}: missing team"))?,
        channel: channel.ok_or_else(|| format!("{what}: missing channel"))?,
        priority,
    })
}

pub struct Owners {
    key: String,
    owners: HashMap<String, Owner>,
    default: Option<Owner>,
}

impl Enricher for Owners {
    fn init(config: &Config) -> Result<Self, String> {
        let owners = config
            .with_prefix("owner.")
            .map(|(service, text)| {
                Ok((
                    service.to_string(),
                    parse_owner(&format!("owner.{service}"), text)?,
                ))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let default = config
            .get("default")
            .map(|t| parse_owner("default", t))
            .transpose()?;
        if owners.is_empty() && default.is_none() {
            return Err("no owners configured: give owner.<service> keys or a default".into());
        }
        weir_sdk::log::info(&format!("loaded {} owners", owners.len()));
        Ok(Self {
            key: config.get_or("key", "service_name").to_string(),
            owners,
            default,
        })
    }

    fn enrich(&mut self, event: &Event<'_>, changes: &mut Changes<'_>) -> Result<(), String> {
        let owner = event
            .tag(&self.key)
            .and_then(|service| self.owners.get(service))
            .or(self.default.as_ref());
        if let Some(owner) = owner {
            changes
                .set_tag("team", &owner.team)
                .set_tag("channel", &owner.channel)
                .set_tag("priority", &owner.priority);
        }
        Ok(())
    }
}

weir_sdk::export_enricher!(Owners);

#[cfg(test)]
mod tests {
    use weir_sdk::{Events, EventsBuilder, testing};

    use super::*;

    #[test]
    fn owners_and_default() {
        let mut e = Owners::init(&Config::from_pairs([
            (
                "owner.checkout",
                "team=payments, channel=#pay-alerts, priority=high",
            ),
            ("default", "team=sre,channel=#ops,priority=low"),
        ]))
        .unwrap();
        let mut b = EventsBuilder::new();
        b.event("checks", 1)
            .tag("service_name", "checkout")
            .field_f64("response_ms", 5.0);
        b.event("checks", 2).tag("service_name", "search");
        b.event("checks", 3);
        let out = testing::enrich(&mut e, &b.finish().unwrap()[0]).unwrap();
        let events = Events::new(&out).unwrap();
        assert_eq!(events.event(0).tag("team"), Some("payments"));
        assert_eq!(events.event(0).tag("priority"), Some("high"));
        assert_eq!(events.event(0).field_f64("response_ms"), Some(5.0));
        assert_eq!(events.event(1).tag("channel"), Some("#ops"));
        assert_eq!(events.event(2).tag("priority"), Some("low"));
    }

    #[test]
    fn bad_config_is_refused() {
        let err = |pairs: &[(&str, &str)]| {
            Owners::init(&Config::from_pairs(pairs.iter().copied()))
                .err()
                .unwrap()
        };
        assert!(err(&[]).contains("no owners"));
        assert!(err(&[("owner.a", "team=x,channel=y,priority=medium")]).contains("high or low"));
        assert!(err(&[("owner.a", "team=x,priority=high")]).contains("missing channel"));
        assert!(
            err(&[("owner.a", "team=x,channel=y,priority=high,colour=red")])
                .contains("unknown key")
        );
    }
}
