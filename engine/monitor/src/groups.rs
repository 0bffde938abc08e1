//! Alert groups: alerts that share the values of a few labels (by default
//! `alertname`, `service`, `service_name` and `region`) are told together,
//! the way Alertmanager groups them — so a DNS outage that fails 500
//! services of one region pages once, not 500 times.
//!
//! Grouping is online. A notifying transition (firing, or the resolution
//! of a firing that was told) joins the open group of its key, or opens
//! one, through one map lookup under the alert book's lock: never by
//! buffering and rescanning, and two arrivals can never open two groups
//! for one key. A group stops taking alerts once it has been quiet for its
//! `window` (the next alert of its key opens a new group rather than hide
//! in an old one) and closes when all its alerts are resolved and told.
//!
//! Each receiver of a group is told on Alertmanager's schedule:
//! `group_wait` after the group opens (alerts arriving meanwhile go in the
//! same message), then at most every `group_interval` while the group
//! changes, and every `repeat_interval` while it fires unchanged.
//!
//! The groups live in the alert book's state file, saved with the alerts
//! and the outbox in one atomic write: a group waiting out its
//! `group_wait` when Weir is killed notifies once after the restart, on
//! time — not twice, not never.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alerts::AlertState;
use crate::rule::{ALERTNAME, fingerprint};
use crate::{Result, config_error, parse_duration};

/// Labels that key a group unless a rule or event says otherwise.
pub const DEFAULT_GROUP_BY: [&str; 4] = [ALERTNAME, "service", "service_name", "region"];
/// `group_by = ["..."]`: every label, i.e. each alert instance alone.
pub const EVERY_LABEL: &str = "...";

/// How alerts of a rule (or event) are grouped and told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grouping {
    /// Label names whose values key the group; `None`: every label.
    pub by: Option<Vec<String>>,
    pub wait: Duration,
    pub interval: Duration,
    pub repeat: Duration,
    pub window: Duration,
}

impl Default for Grouping {
    /// Alertmanager's defaults, and a 30-minute window.
    fn default() -> Self {
        Self {
            by: Some(DEFAULT_GROUP_BY.iter().map(|s| s.to_string()).collect()),
            wait: Duration::from_secs(30),
            interval: Duration::from_secs(300),
            repeat: Duration::from_secs(4 * 3600),
            window: Duration::from_secs(1800),
        }
    }
}

impl Grouping {
    /// Each alert alone, told at once: the book's grouping when none is
    /// configured (tests, `weir rules test`).
    pub fn immediate() -> Self {
        Self {
            by: None,
            wait: Duration::ZERO,
            interval: Duration::ZERO,
            repeat: Duration::from_secs(100 * 365 * 24 * 3600),
            window: Duration::ZERO,
        }
    }
}

/// The grouping keys of a config section (global settings, a rule, an
/// event), each optional: what is not given is inherited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupingOverrides {
    pub by: Option<Option<Vec<String>>>,
    pub wait: Option<Duration>,
    pub interval: Option<Duration>,
    pub repeat: Option<Duration>,
    pub window: Option<Duration>,
}

impl GroupingOverrides {
    /// Checks `group_by`, `group_wait`, `group_interval`, `repeat_interval`
    /// and `group_window` as given in the section `what` (empty: the top
    /// level).
    pub fn parse(
        what: &str,
        by: Option<&[String]>,
        wait: Option<&str>,
        interval: Option<&str>,
        repeat: Option<&str>,
        window: Option<&str>,
    ) -> Result<Self> {
        let key = |k: &str| {
            if what.is_empty() {
                k.to_string()
            } else {
                format!("{what}.{k}")
            }
        };
        let by = by
            .map(|names| {
                if names.iter().any(|n| n == EVERY_LABEL) {
                    if names.len() > 1 {
                        return Err(config_error(
                            key("group_by"),
                            "\"...\" (every label) stands alone",
                        ));
                    }
                    return Ok(None);
                }
                let mut labels = Vec::with_capacity(names.len());
                for name in names {
                    let label = label_of(name).ok_or_else(|| {
                        config_error(
                            key("group_by"),
                            format!(
                                "{name:?} is not a label name, ${{alert.monitor}} or ${{context.NAME}}"
                            ),
                        )
                    })?;
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                Ok(Some(labels))
            })
            .transpose()?;
        let duration = |k: &str, text: Option<&str>, min: Duration| -> Result<Option<Duration>> {
            let Some(text) = text else { return Ok(None) };
            let d = parse_duration(&key(k), text)?;
            if d < min {
                return Err(config_error(
                    key(k),
                    format!("must be at least {}", humantime::format_duration(min)),
                ));
            }
            Ok(Some(d))
        };
        Ok(Self {
            by,
            wait: duration("group_wait", wait, Duration::ZERO)?,
            interval: duration("group_interval", interval, Duration::from_secs(1))?,
            repeat: duration("repeat_interval", repeat, Duration::from_secs(1))?,
            window: duration("group_window", window, Duration::from_secs(1))?,
        })
    }

    /// These overrides over `base`.
    pub fn over(&self, base: &Grouping) -> Grouping {
        Grouping {
            by: self.by.clone().unwrap_or_else(|| base.by.clone()),
            wait: self.wait.unwrap_or(base.wait),
            interval: self.interval.unwrap_or(base.interval),
            repeat: self.repeat.unwrap_or(base.repeat),
            window: self.window.unwrap_or(base.window),
        }
    }
}

/// The label a `group_by` entry names: a label name, or an event's
/// `${alert.monitor}` (the `alertname`) or `${context.NAME}`.
fn label_of(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let name = match entry.strip_prefix("${").and_then(|e| e.strip_suffix('}')) {
        Some(inner) => match inner.trim() {
            "alert.monitor" | "rule.name" => ALERTNAME,
            inner => inner
                .strip_prefix("context.")
                .or_else(|| inner.strip_prefix("labels."))?,
        },
        None => entry,
    };
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then(|| name.to_string())
}

impl Grouping {
    /// The group key of an alert with `labels`.
    pub fn key(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.by {
            None => labels.clone(),
            Some(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }
}

/// An alert in a group, as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// `firing`, or `resolved` once its resolution is to be told.
    pub state: AlertState,
    pub receivers: Vec<String>,
}

/// Where one receiver of a group stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flush {
    /// When the receiver is next due a look (`None`: nothing to tell).
    pub due_ns: Option<i64>,
    /// When it was last told, and what: fingerprint → state.
    pub told_ns: Option<i64>,
    pub told: BTreeMap<String, AlertState>,
    /// Notifications decided for it so far.
    pub sent: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub key: BTreeMap<String, String>,
    /// The key with its `group_by`, as `joinable` knows it.
    key_hash: String,
    pub grouping: Grouping,
    pub opened_ns: i64,
    pub last_activity_ns: i64,
    /// Still taking alerts (not past its window).
    pub joinable: bool,
    pub members: BTreeMap<String, Member>,
    pub flushes: BTreeMap<String, Flush>,
}

/// A notification a group owes one receiver: the group's alerts routed
/// to it, by fingerprint, with the state to tell.
#[derive(Debug, Clone, PartialEq)]
pub struct Telling {
    pub group_id: String,
    /// The group's key (the group may close with this telling).
    pub key: BTreeMap<String, String>,
    pub receiver: String,
    pub alerts: BTreeMap<String, AlertState>,
    /// The receiver's notification number in the group (1, 2, …).
    pub seq: u64,
}

/// Every group, open and draining.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Groups {
    /// By id.
    groups: BTreeMap<String, Group>,
    /// The joinable group of each key (by the key's hash).
    joinable: BTreeMap<String, String>,
    /// The group of each alert in one, by fingerprint.
    group_of: BTreeMap<String, String>,
}

impl Groups {
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// An alert's notifying change: it joins (or opens) its group, which
    /// schedules a look for each of its receivers. Returns the group's id.
    pub fn arrive(
        &mut self,
        grouping: &Grouping,
        fingerprint_: &str,
        labels: &BTreeMap<String, String>,
        state: AlertState,
        receivers: &[String],
        now_ns: i64,
    ) -> String {
        // An alert already in a group (its resolution, or a new episode
        // before the old one was told) stays with the group that told it.
        let key = grouping.key(labels);
        let key_hash = format!("{}:{}", group_by_text(grouping), fingerprint(&key));
        let member_of = self
            .group_of
            .get(fingerprint_)
            .filter(|id| self.groups.get(*id).is_some_and(|g| g.key == key))
            .cloned();
        let id = match member_of {
            Some(id) => id,
            None => {
                let current = self
                    .joinable
                    .get(&key_hash)
                    .and_then(|id| self.groups.get(id))
                    .filter(|g| now_ns - g.last_activity_ns <= g.grouping.window.as_nanos() as i64)
                    .map(|g| g.id.clone());
                match current {
                    Some(id) => id,
                    None => {
                        if let Some(old) = self.joinable.remove(&key_hash)
                            && let Some(g) = self.groups.get_mut(&old)
                        {
                            g.joinable = false;
                        }
                        let id = format!("{}-{}", fingerprint(&key), now_ns / 1_000_000);
                        self.groups.insert(
                            id.clone(),
                            Group {
                                id: id.clone(),
                                key,
                                key_hash: key_hash.clone(),
                                grouping: grouping.clone(),
                                opened_ns: now_ns,
                                last_activity_ns: now_ns,
                                joinable: true,
                                members: BTreeMap::new(),
                                flushes: BTreeMap::new(),
                            },
                        );
                        self.joinable.insert(key_hash, id.clone());
                        id
                    }
                }
            }
        };
        let Some(group) = self.groups.get_mut(&id) else {
            return id;
        };
        group.last_activity_ns = now_ns;
        self.group_of.insert(fingerprint_.to_string(), id.clone());
        group.members.insert(
            fingerprint_.to_string(),
            Member {
                state,
                receivers: receivers.to_vec(),
            },
        );
        for receiver in receivers {
            let flush = group.flushes.entry(receiver.clone()).or_default();
            let due = match flush.told_ns {
                // Not told yet: group_wait after the group opened.
                None => group.opened_ns + group.grouping.wait.as_nanos() as i64,
                // Told before: no sooner than group_interval after that.
                Some(told) => told + group.grouping.interval.as_nanos() as i64,
            };
            flush.due_ns = Some(flush.due_ns.map_or(due, |d| d.min(due)));
        }
        id
    }

    /// The earliest time any group is due a look.
    pub fn next_due(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|g| g.flushes.values().filter_map(|f| f.due_ns))
            .min()
    }

    /// Looks at every receiver of every group that is due: decides what
    /// each is told (a change since it was last told, or a repeat of a
    /// group still firing after `repeat_interval`), and closes groups
    /// whose alerts are all resolved and told.
    pub fn due(&mut self, now_ns: i64) -> Vec<Telling> {
        let Self {
            groups,
            joinable,
            group_of,
        } = self;
        let mut tellings = Vec::new();
        let mut closed = Vec::new();
        for group in groups.values_mut() {
            let repeat = group.grouping.repeat.as_nanos() as i64;
            for (receiver, flush) in &mut group.flushes {
                if flush.due_ns.is_none_or(|due| due > now_ns) {
                    continue;
                }
                let now_set: BTreeMap<String, AlertState> = group
                    .members
                    .iter()
                    .filter(|(_, m)| m.receivers.contains(receiver))
                    .map(|(fp, m)| (fp.clone(), m.state))
                    .collect();
                let firing = now_set.values().any(|s| *s == AlertState::Firing);
                if flush.told_ns.is_none() && !firing {
                    // As in Alertmanager: a receiver never told of the group
                    // firing is not told that it resolved.
                    flush.told = now_set;
                    flush.due_ns = None;
                    continue;
                }
                let changed = now_set != flush.told;
                let repeat_due = firing && flush.told_ns.is_some_and(|t| now_ns - t >= repeat);
                if changed || repeat_due {
                    flush.sent += 1;
                    tellings.push(Telling {
                        group_id: group.id.clone(),
                        key: group.key.clone(),
                        receiver: receiver.clone(),
                        alerts: now_set.clone(),
                        seq: flush.sent,
                    });
                    flush.told_ns = Some(now_ns);
                    flush.told = now_set;
                }
                flush.due_ns = match (firing, flush.told_ns) {
                    (true, Some(told)) => Some(told + repeat),
                    _ => None,
                };
            }
            // Resolved alerts told to all their receivers leave the group.
            let flushes = &group.flushes;
            group.members.retain(|fp, m| {
                let keep = m.state != AlertState::Resolved
                    || m.receivers.iter().any(|r| {
                        flushes
                            .get(r)
                            .is_none_or(|f| f.told.get(fp) != Some(&AlertState::Resolved))
                    });
                if !keep {
                    group_of.remove(fp);
                }
                keep
            });
            for flush in group.flushes.values_mut() {
                flush
                    .told
                    .retain(|fp, s| *s != AlertState::Resolved || group.members.contains_key(fp));
            }
            if group.members.is_empty() {
                closed.push(group.id.clone());
            }
        }
        for id in closed {
            close(groups, joinable, &id);
        }
        tellings
    }

    /// Takes an alert out of its groups without telling anyone (it was
    /// never told as firing, e.g. suppressed).
    pub fn forget(&mut self, fingerprint_: &str) {
        let Some(id) = self.group_of.remove(fingerprint_) else {
            return;
        };
        let Some(group) = self.groups.get_mut(&id) else {
            return;
        };
        group.members.remove(fingerprint_);
        for flush in group.flushes.values_mut() {
            flush.told.remove(fingerprint_);
        }
        if group.members.is_empty() {
            close(&mut self.groups, &mut self.joinable, &id);
        }
    }
}

fn close(groups: &mut BTreeMap<String, Group>, joinable: &mut BTreeMap<String, String>, id: &str) {
    if let Some(group) = groups.remove(id)
        && joinable.get(&group.key_hash).is_some_and(|j| j == id)
    {
        joinable.remove(&group.key_hash);
    }
}

/// Rules with different `group_by` never share a group, even when their
/// keys' values agree.
fn group_by_text(grouping: &Grouping) -> String {
    match &grouping.by {
        None => EVERY_LABEL.to_string(),
        Some(names) => names.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    fn grouping(by: &[&str]) -> Grouping {
        Grouping {
            by: Some(by.iter().map(|s| s.to_string()).collect()),
            wait: Duration::from_secs(30),
            interval: Duration::from_secs(300),
            repeat: Duration::from_secs(3600),
            window: Duration::from_secs(1800),
        }
    }

    fn labels(service: &str, region: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ALERTNAME.to_string(), "down".to_string()),
            ("service".to_string(), service.to_string()),
            ("region".to_string(), region.to_string()),
        ])
    }

    fn chat() -> Vec<String> {
        vec!["chat".to_string()]
    }

    #[test]
    fn five_hundred_failures_of_one_region_are_one_message() {
        let g = grouping(&[ALERTNAME, "region"]);
        let mut groups = Groups::default();
        for i in 0..500 {
            let l = labels(&format!("svc-{i}"), "eu");
            groups.arrive(
                &g,
                &fingerprint(&l),
                &l,
                AlertState::Firing,
                &chat(),
                i * SEC / 100,
            );
        }
        assert_eq!(groups.len(), 1);
        assert!(groups.due(29 * SEC).is_empty(), "not before group_wait");
        let told = groups.due(30 * SEC);
        assert_eq!(told.len(), 1);
        assert_eq!(told[0].alerts.len(), 500);
        // Unchanged: nothing until repeat_interval.
        assert!(groups.due(31 * SEC).is_empty());
        assert_eq!(groups.next_due(), Some(30 * SEC + 3600 * SEC));
        let repeated = groups.due(3630 * SEC);
        assert_eq!(repeated.len(), 1);
        assert_eq!(repeated[0].seq, 2);
    }

    #[test]
    fn changes_wait_for_group_interval_and_the_group_closes_when_all_resolve() {
        let g = grouping(&[ALERTNAME, "region"]);
        let mut groups = Groups::default();
        let a = labels("a", "eu");
        let b = labels("b", "eu");
        let (fa, fb) = (fingerprint(&a), fingerprint(&b));
        groups.arrive(&g, &fa, &a, AlertState::Firing, &chat(), 0);
        assert_eq!(groups.due(30 * SEC).len(), 1);
        // A new member 10 s later waits for group_interval after the last message.
        groups.arrive(&g, &fb, &b, AlertState::Firing, &chat(), 40 * SEC);
        assert!(groups.due(100 * SEC).is_empty());
        let update = groups.due(330 * SEC);
        assert_eq!(update.len(), 1);
        assert_eq!(update[0].alerts.len(), 2);
        // Both resolve: one message says so, then the group is gone.
        groups.arrive(&g, &fa, &a, AlertState::Resolved, &chat(), 400 * SEC);
        groups.arrive(&g, &fb, &b, AlertState::Resolved, &chat(), 401 * SEC);
        assert!(groups.due(500 * SEC).is_empty(), "group_interval again");
        let resolved = groups.due(630 * SEC);
        assert_eq!(resolved.len(), 1);
        assert!(
            resolved[0]
                .alerts
                .values()
                .all(|s| *s == AlertState::Resolved)
        );
        assert!(groups.is_empty());
    }

    #[test]
    fn a_group_resolved_before_it_was_told_says_nothing() {
        let g = grouping(&[ALERTNAME, "region"]);
        let mut groups = Groups::default();
        let a = labels("a", "eu");
        groups.arrive(&g, &fingerprint(&a), &a, AlertState::Firing, &chat(), 0);
        groups.arrive(
            &g,
            &fingerprint(&a),
            &a,
            AlertState::Resolved,
            &chat(),
            10 * SEC,
        );
        assert!(groups.due(30 * SEC).is_empty());
        assert!(groups.is_empty(), "and the group is gone");
    }

    #[test]
    fn a_failure_after_the_window_opens_a_new_group() {
        let g = Grouping {
            repeat: Duration::from_secs(4 * 3600),
            ..grouping(&[ALERTNAME, "region"])
        };
        let mut groups = Groups::default();
        let a = labels("a", "eu");
        let b = labels("b", "eu");
        groups.arrive(&g, &fingerprint(&a), &a, AlertState::Firing, &chat(), 0);
        groups.due(30 * SEC);
        // An hour later, past the 30-minute window: a group of its own.
        let second = groups.arrive(
            &g,
            &fingerprint(&b),
            &b,
            AlertState::Firing,
            &chat(),
            3600 * SEC,
        );
        assert_eq!(groups.len(), 2);
        let told = groups.due(3630 * SEC);
        assert_eq!(told.len(), 1, "only the new group is due: {told:?}");
        assert_eq!(told[0].group_id, second);
        assert_eq!(told[0].alerts.len(), 1);
        // The first group's resolution still goes to the first group.
        let first = groups.arrive(
            &g,
            &fingerprint(&a),
            &a,
            AlertState::Resolved,
            &chat(),
            3700 * SEC,
        );
        assert_ne!(first, second);
    }

    #[test]
    fn keys_receivers_and_every_label() {
        let g = grouping(&[ALERTNAME, "region"]);
        let mut groups = Groups::default();
        let eu = labels("a", "eu");
        let us = labels("a", "us");
        groups.arrive(&g, &fingerprint(&eu), &eu, AlertState::Firing, &chat(), 0);
        groups.arrive(&g, &fingerprint(&us), &us, AlertState::Firing, &chat(), 0);
        assert_eq!(groups.len(), 2, "regions differ");
        // Each receiver is told only its alerts.
        let b = labels("b", "eu");
        groups.arrive(
            &g,
            &fingerprint(&b),
            &b,
            AlertState::Firing,
            &["pager".to_string()],
            SEC,
        );
        let told = groups.due(30 * SEC);
        let per: Vec<(String, usize)> = told
            .iter()
            .map(|t| (t.receiver.clone(), t.alerts.len()))
            .collect();
        assert_eq!(per.len(), 3, "{per:?}");
        assert!(per.contains(&("pager".to_string(), 1)));
        // `...`: every alert alone.
        let alone =
            GroupingOverrides::parse("r", Some(&["...".to_string()]), None, None, None, None)
                .unwrap()
                .over(&g);
        let mut groups = Groups::default();
        groups.arrive(
            &alone,
            &fingerprint(&eu),
            &eu,
            AlertState::Firing,
            &chat(),
            0,
        );
        let b = labels("b", "eu");
        groups.arrive(&alone, &fingerprint(&b), &b, AlertState::Firing, &chat(), 0);
        assert_eq!(groups.len(), 2);
    }

    #[test]
    fn grouping_options_are_checked() {
        let by = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let ok = GroupingOverrides::parse(
            "rules.r",
            Some(&by(&["${alert.monitor}", "${context.region}", "service"])),
            Some("0s"),
            Some("1m"),
            Some("2h"),
            None,
        )
        .unwrap();
        assert_eq!(ok.by, Some(Some(by(&[ALERTNAME, "region", "service"]))));
        for (by_, wait, interval, expect) in [
            (Some(by(&["a-b"])), None, None, "not a label name"),
            (Some(by(&["...", "x"])), None, None, "stands alone"),
            (Some(by(&["${value}"])), None, None, "not a label name"),
            (None, Some("soon"), None, "not a duration"),
            (None, None, Some("0s"), "at least 1s"),
        ] {
            let err =
                GroupingOverrides::parse("rules.r", by_.as_deref(), wait, interval, None, None)
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(expect) && err.starts_with("rules.r."), "{err}");
        }
    }
}
