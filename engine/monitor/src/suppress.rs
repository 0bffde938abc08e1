//! Suppressions (Alertmanager calls them silences): time-boxed, matcher-
//! targeted, and kept durably in `<data_dir>/monitor/suppressions.json`
//! (replaced atomically and fsynced before a change is answered, so a
//! suppression made just before a crash is still there after it).
//!
//! A suppression targets a list of matcher *sets*; an alert is suppressed
//! when every matcher of some set matches its labels. What may be made is
//! checked on the matchers' language (see [`matcher`]): no empty target, no
//! set without an equality matcher, no matcher that takes every value.

pub mod matcher;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::alerts::{read_state, write_atomic};
use crate::{Error, Result};
pub use matcher::{MatchOp, Matcher, MatcherSpec};

/// Expired suppressions stay listed this long (Alertmanager keeps them
/// five days too), then are dropped.
const KEEP_EXPIRED: Duration = Duration::from_secs(5 * 24 * 3600);
/// Longest text of a comment or a metadata value.
const MAX_TEXT_BYTES: usize = 4096;
/// Most suppressions kept at once (active, pending and recently expired).
pub const MAX_SUPPRESSIONS: usize = 100_000;
/// The metadata keys a suppression may carry.
pub const METADATA_KEYS: [&str; 5] = ["team", "engineer", "channel", "ticket", "description"];

/// Where a suppression is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SuppressionState {
    /// Scheduled: starts later.
    Pending,
    Active,
    Expired,
}

impl SuppressionState {
    pub fn as_str(self) -> &'static str {
        match self {
            SuppressionState::Pending => "pending",
            SuppressionState::Active => "active",
            SuppressionState::Expired => "expired",
        }
    }
}

/// A suppression as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub id: String,
    /// Matcher sets; any one matching in full suppresses.
    pub targets: Vec<Vec<Matcher>>,
    pub starts_at_ns: i64,
    pub ends_at_ns: i64,
    pub created_by: String,
    pub comment: String,
    /// team, engineer, channel, ticket, description.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    pub created_ns: i64,
    pub updated_ns: i64,
}

impl Suppression {
    pub fn state(&self, now_ns: i64) -> SuppressionState {
        if now_ns >= self.ends_at_ns {
            SuppressionState::Expired
        } else if now_ns < self.starts_at_ns {
            SuppressionState::Pending
        } else {
            SuppressionState::Active
        }
    }

    /// Whether the labels fall under some target set (regardless of time).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.targets
            .iter()
            .any(|set| set.iter().all(|m| m.matches(labels)))
    }
}

/// What a client asks for: a new suppression, or (with `id`) a change to one.
#[derive(Debug, Clone, Default)]
pub struct SuppressionRequest {
    pub id: Option<String>,
    pub targets: Vec<Vec<Matcher>>,
    /// Default: now.
    pub starts_at_ns: Option<i64>,
    pub ends_at_ns: i64,
    pub created_by: String,
    pub comment: String,
    pub metadata: BTreeMap<String, String>,
}

/// Limits on what may be made (the blast-radius limit is the monitor's: it
/// needs live data).
#[derive(Debug, Clone)]
pub struct SuppressionLimits {
    /// Longest a suppression may last.
    pub max_duration: Duration,
}

/// Checks a request on its own: targets, times, text. Returns the targets'
/// problem as a sentence a person can act on.
pub fn check_request(
    request: &SuppressionRequest,
    limits: &SuppressionLimits,
    now_ns: i64,
) -> Result<()> {
    let refuse = |message: String| Err(crate::config_error("suppression", message));
    if request.targets.is_empty() {
        return refuse(
            "it has no target: give at least one matcher set, e.g. service=\"api\"".into(),
        );
    }
    if request.targets.len() > matcher::MAX_SETS {
        return refuse(format!(
            "{} matcher sets; at most {}",
            request.targets.len(),
            matcher::MAX_SETS
        ));
    }
    for (i, set) in request.targets.iter().enumerate() {
        let which = format!("matcher set {}", i + 1);
        if set.len() > matcher::MAX_MATCHERS_PER_SET {
            return refuse(format!(
                "{which} has {} matchers; at most {}",
                set.len(),
                matcher::MAX_MATCHERS_PER_SET
            ));
        }
        if let Some(m) = set.iter().find(|m| m.is_universal()) {
            return refuse(format!(
                "{which}: {m} matches every value of {:?}; it would suppress everything that has the label",
                m.name
            ));
        }
        if !set.iter().any(Matcher::is_pinning) {
            return refuse(format!(
                "{which} has no equality matcher (name=\"value\"); without one it would suppress every alert that lacks what its other matchers exclude"
            ));
        }
    }
    let starts = request.starts_at_ns.unwrap_or(now_ns);
    if request.ends_at_ns <= starts {
        return refuse("it ends before it starts".into());
    }
    if request.ends_at_ns <= now_ns {
        return refuse("its end is in the past".into());
    }
    let longest = limits.max_duration.as_nanos().min(i64::MAX as u128) as i64;
    if request.ends_at_ns.saturating_sub(starts.max(now_ns)) > longest {
        return refuse(format!(
            "it lasts longer than max_suppression_duration ({})",
            humantime::format_duration(limits.max_duration)
        ));
    }
    if request.created_by.trim().is_empty() {
        return refuse("created_by is required: who made it".into());
    }
    if request.comment.trim().is_empty() {
        return refuse("a comment is required: why it exists".into());
    }
    for (what, text) in [
        ("created_by", &request.created_by),
        ("comment", &request.comment),
    ]
    .into_iter()
    .chain(request.metadata.iter().map(|(k, v)| (k.as_str(), v)))
    {
        if text.len() > MAX_TEXT_BYTES {
            return refuse(format!("{what} is over {MAX_TEXT_BYTES} bytes"));
        }
    }
    if let Some(key) = request
        .metadata
        .keys()
        .find(|k| !METADATA_KEYS.contains(&k.as_str()))
    {
        return refuse(format!(
            "unknown metadata {key:?}; known: {}",
            METADATA_KEYS.join(", ")
        ));
    }
    if let Some(id) = &request.id
        && !is_id(id)
    {
        return refuse(format!("{id:?} is not a suppression id"));
    }
    Ok(())
}

/// Suppression ids are UUIDs (as Alertmanager's, so amtool shows them).
pub(crate) fn is_id(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| {
            matches!(i, 8 | 13 | 18 | 23) == (c == '-') && (c == '-' || c.is_ascii_hexdigit())
        })
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// What a suppression would hide: the alert instances of the last 24 hours
/// (and those current) that it matches.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlastRadius {
    /// Distinct alert instances (label sets) matched.
    pub alert_instances: usize,
    /// Of those, firing now.
    pub firing_now: usize,
    /// Distinct services among them (their `service` label, else
    /// `service_name`).
    pub services: usize,
    /// Distinct rules (`alertname`).
    pub rules: usize,
    /// Up to ten of the matched label sets.
    pub examples: Vec<BTreeMap<String, String>>,
}

/// How far `targets` reach over `candidates` (label set, firing now); a
/// label set given twice counts once.
pub fn blast_radius<'a>(
    targets: &[Vec<Matcher>],
    candidates: impl IntoIterator<Item = (&'a BTreeMap<String, String>, bool)>,
) -> BlastRadius {
    let mut seen: BTreeMap<&BTreeMap<String, String>, bool> = BTreeMap::new();
    for (labels, firing) in candidates {
        if targets
            .iter()
            .any(|set| set.iter().all(|m| m.matches(labels)))
        {
            *seen.entry(labels).or_default() |= firing;
        }
    }
    let distinct = |keys: &[&str]| {
        seen.keys()
            .filter_map(|l| keys.iter().find_map(|k| l.get(*k)))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    };
    BlastRadius {
        alert_instances: seen.len(),
        firing_now: seen.values().filter(|f| **f).count(),
        services: distinct(&["service", "service_name"]),
        rules: distinct(&[crate::rule::ALERTNAME]),
        examples: seen.keys().take(10).map(|l| (*l).clone()).collect(),
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SuppressionFile {
    suppressions: BTreeMap<String, Suppression>,
}

/// Every suppression, readable from any task; changes are serialized and on
/// disk before they are answered.
#[derive(Clone)]
pub struct SuppressionBook {
    current: Arc<RwLock<Current>>,
    path: Option<PathBuf>,
    change: Arc<tokio::sync::Mutex<()>>,
}

/// The suppressions, and an index that makes matching an alert cost its
/// labels, not the number of suppressions: every target set has an equality
/// matcher on a non-empty value, so each set is filed under its first one,
/// and an alert need only look up its own `(label, value)` pairs.
#[derive(Default)]
struct Current {
    all: BTreeMap<String, Arc<Suppression>>,
    /// label name → label value → suppressions with a set pinned there.
    by_pin: HashMap<String, HashMap<String, Vec<Arc<Suppression>>>>,
    /// Bumped on every change.
    generation: u64,
}

impl Current {
    fn new(all: BTreeMap<String, Arc<Suppression>>, generation: u64) -> Self {
        let mut by_pin: HashMap<String, HashMap<String, Vec<Arc<Suppression>>>> = HashMap::new();
        for s in all.values() {
            let mut pins: Vec<(String, String)> = s
                .targets
                .iter()
                .filter_map(|set| set.iter().find(|m| m.is_pinning()))
                .map(|m| (m.name.clone(), m.value.clone()))
                .collect();
            pins.sort();
            pins.dedup();
            for (name, value) in pins {
                by_pin
                    .entry(name)
                    .or_default()
                    .entry(value)
                    .or_default()
                    .push(Arc::clone(s));
            }
        }
        Current {
            all,
            by_pin,
            generation,
        }
    }
}

impl SuppressionBook {
    /// Opens `<dir>/suppressions.json`; `None` keeps them in memory (tests,
    /// backtests).
    pub fn open(dir: Option<&Path>) -> Result<Self> {
        let path = dir.map(|d| d.join("suppressions.json"));
        let file: SuppressionFile = match &path {
            Some(path) => read_state(path, "fix it or move it away to start with no suppressions")?
                .unwrap_or_default(),
            None => SuppressionFile::default(),
        };
        Ok(Self {
            current: Arc::new(RwLock::new(Current::new(
                file.suppressions
                    .into_iter()
                    .map(|(id, s)| (id, Arc::new(s)))
                    .collect(),
                0,
            ))),
            path,
            change: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// An in-memory book of these suppressions, as they are (ids and
    /// windows kept): a backtest replays the past with them.
    pub fn replay(suppressions: impl IntoIterator<Item = Suppression>) -> Self {
        Self {
            current: Arc::new(RwLock::new(Current::new(
                suppressions
                    .into_iter()
                    .map(|s| (s.id.clone(), Arc::new(s)))
                    .collect(),
                0,
            ))),
            path: None,
            change: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn list(&self) -> Vec<Arc<Suppression>> {
        self.read().all.values().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<Arc<Suppression>> {
        self.read().all.get(id).cloned()
    }

    /// Changes so far; a reader that saw this number has seen every change
    /// before it.
    pub fn generation(&self) -> u64 {
        self.read().generation
    }

    /// Whether some suppression starts or ends in `(after_ns, through_ns]`:
    /// whether alerts must be looked at again.
    pub fn boundary_between(&self, after_ns: i64, through_ns: i64) -> bool {
        self.read().all.values().any(|s| {
            (after_ns < s.starts_at_ns && s.starts_at_ns <= through_ns)
                || (after_ns < s.ends_at_ns && s.ends_at_ns <= through_ns)
        })
    }

    /// Ids of the suppressions active at `now_ns` that match `labels`,
    /// sorted.
    pub fn suppressing(&self, labels: &BTreeMap<String, String>, now_ns: i64) -> Vec<String> {
        let current = self.read();
        let mut ids: Vec<String> = Vec::new();
        for (name, value) in labels {
            let Some(candidates) = current
                .by_pin
                .get(name.as_str())
                .and_then(|values| values.get(value.as_str()))
            else {
                continue;
            };
            for s in candidates {
                if s.state(now_ns) == SuppressionState::Active
                    && s.matches(labels)
                    && !ids.contains(&s.id)
                {
                    ids.push(s.id.clone());
                }
            }
        }
        ids.sort();
        ids
    }

    /// Creates (no id) or changes (an existing id) a suppression from a
    /// request already checked with [`check_request`]; durable on return.
    pub async fn upsert(&self, request: SuppressionRequest, now_ns: i64) -> Result<Suppression> {
        let _one_change = self.change.lock().await;
        let mut next = self.read().all.clone();
        let suppression = match &request.id {
            Some(id) => {
                let old = next.get(id).ok_or_else(|| Error::NotFound {
                    kind: "suppression",
                    name: id.clone(),
                })?;
                if old.state(now_ns) == SuppressionState::Expired {
                    return Err(crate::config_error(
                        "suppression",
                        format!("{id} has expired; create a new one"),
                    ));
                }
                // Without a new start it keeps its own (a scheduled one may
                // start later than the checks assumed).
                let starts_at_ns = request.starts_at_ns.unwrap_or(old.starts_at_ns);
                if request.ends_at_ns <= starts_at_ns {
                    return Err(crate::config_error(
                        "suppression",
                        "it ends before it starts",
                    ));
                }
                Suppression {
                    id: id.clone(),
                    targets: request.targets,
                    starts_at_ns,
                    ends_at_ns: request.ends_at_ns,
                    created_by: request.created_by,
                    comment: request.comment,
                    metadata: request.metadata,
                    created_ns: old.created_ns,
                    updated_ns: now_ns,
                }
            }
            None => {
                if next.len() >= MAX_SUPPRESSIONS {
                    return Err(crate::config_error(
                        "suppression",
                        format!("there are already {MAX_SUPPRESSIONS} suppressions"),
                    ));
                }
                Suppression {
                    id: new_id(),
                    targets: request.targets,
                    starts_at_ns: request.starts_at_ns.unwrap_or(now_ns),
                    ends_at_ns: request.ends_at_ns,
                    created_by: request.created_by,
                    comment: request.comment,
                    metadata: request.metadata,
                    created_ns: now_ns,
                    updated_ns: now_ns,
                }
            }
        };
        next.insert(suppression.id.clone(), Arc::new(suppression.clone()));
        self.commit(next).await?;
        Ok(suppression)
    }

    /// Ends a suppression now (a scheduled one never starts). Expiring an
    /// expired one changes nothing.
    pub async fn expire(&self, id: &str, now_ns: i64) -> Result<Suppression> {
        let _one_change = self.change.lock().await;
        let mut next = self.read().all.clone();
        let old = next.get(id).ok_or_else(|| Error::NotFound {
            kind: "suppression",
            name: id.to_string(),
        })?;
        if old.state(now_ns) == SuppressionState::Expired {
            return Ok(old.as_ref().clone());
        }
        let mut expired = old.as_ref().clone();
        expired.starts_at_ns = expired.starts_at_ns.min(now_ns);
        expired.ends_at_ns = now_ns;
        expired.updated_ns = now_ns;
        next.insert(id.to_string(), Arc::new(expired.clone()));
        self.commit(next).await?;
        Ok(expired)
    }

    /// Drops suppressions expired for longer than five days.
    pub async fn collect_garbage(&self, now_ns: i64) -> Result<usize> {
        let keep_after = now_ns - KEEP_EXPIRED.as_nanos() as i64;
        if !self.read().all.values().any(|s| s.ends_at_ns < keep_after) {
            return Ok(0);
        }
        let _one_change = self.change.lock().await;
        let mut next = self.read().all.clone();
        let before = next.len();
        next.retain(|_, s| s.ends_at_ns >= keep_after);
        let dropped = before - next.len();
        self.commit(next).await?;
        Ok(dropped)
    }

    /// Writes `next` to disk, then makes it current.
    async fn commit(&self, next: BTreeMap<String, Arc<Suppression>>) -> Result<()> {
        if let Some(path) = self.path.clone() {
            let file = SuppressionFile {
                suppressions: next
                    .iter()
                    .map(|(id, s)| (id.clone(), s.as_ref().clone()))
                    .collect(),
            };
            let bytes = serde_json::to_vec(&file)
                .map_err(|e| Error::Internal(format!("encoding suppressions: {e}")))?;
            tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                .await
                .map_err(|e| Error::Internal(format!("saving suppressions: {e}")))??;
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let generation = current.generation + 1;
        *current = Current::new(next, generation);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000_000;

    fn limits() -> SuppressionLimits {
        SuppressionLimits {
            max_duration: Duration::from_secs(7 * 24 * 3600),
        }
    }

    fn request(sets: &[&[&str]]) -> SuppressionRequest {
        SuppressionRequest {
            targets: sets
                .iter()
                .map(|set| set.iter().map(|m| Matcher::parse(m).unwrap()).collect())
                .collect(),
            ends_at_ns: 60 * MIN,
            created_by: "ana".into(),
            comment: "db maintenance".into(),
            ..Default::default()
        }
    }

    fn refused(r: &SuppressionRequest) -> String {
        check_request(r, &limits(), 0).unwrap_err().to_string()
    }

    #[test]
    fn suppressing_the_world_is_refused_in_every_form() {
        assert!(refused(&request(&[])).contains("no target"));
        assert!(refused(&request(&[&[]])).contains("no equality matcher"));
        for world in [
            r#"alertname=~".+""#,
            r#"alertname!="zzz""#,
            r#"alertname!~"zzz""#,
            r#"service="""#,
            r#"service!="""#,
        ] {
            let message = refused(&request(&[&[world]]));
            assert!(
                message.contains("every value") || message.contains("no equality matcher"),
                "{world}: {message}"
            );
        }
        // A universal matcher beside an equality one is refused too.
        assert!(
            refused(&request(&[&[r#"service="api""#, r#"region=~".*""#]])).contains("every value")
        );
        // One good set does not excuse a bad one.
        assert!(
            refused(&request(&[&[r#"service="api""#], &[r#"alertname!="x""#]])).contains("set 2")
        );
        assert!(
            check_request(
                &request(&[&[r#"service="api""#, r#"region!="us""#]]),
                &limits(),
                0
            )
            .is_ok()
        );
    }

    #[test]
    fn times_text_and_sizes_are_checked() {
        let mut r = request(&[&[r#"service="api""#]]);
        r.ends_at_ns = 0;
        assert!(refused(&r).contains("ends before"));
        r.starts_at_ns = Some(-10 * MIN);
        r.ends_at_ns = -MIN;
        assert!(refused(&r).contains("past"));
        let mut r = request(&[&[r#"service="api""#]]);
        r.ends_at_ns = 8 * 24 * 60 * MIN;
        assert!(refused(&r).contains("max_suppression_duration"));
        let mut r = request(&[&[r#"service="api""#]]);
        r.comment = " ".into();
        assert!(refused(&r).contains("comment"));
        let mut r = request(&[&[r#"service="api""#]]);
        r.metadata.insert("pager".into(), "x".into());
        assert!(refused(&r).contains("unknown metadata"));
        let mut r = request(&[&[r#"service="api""#]]);
        r.metadata
            .insert("ticket".into(), "x".repeat(MAX_TEXT_BYTES + 1));
        assert!(refused(&r).contains("over"));
        let many: Vec<&[&str]> = vec![&[r#"service="api""#]; matcher::MAX_SETS + 1];
        assert!(refused(&request(&many)).contains("matcher sets"));
        let mut r = request(&[&[r#"service="api""#]]);
        r.id = Some("../../etc".into());
        assert!(refused(&r).contains("not a suppression id"));
    }

    #[tokio::test]
    async fn sets_match_by_intersection_and_time_boxes_hold_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let book = SuppressionBook::open(Some(dir.path())).unwrap();
        let mut r = request(&[
            &[r#"service="api""#, r#"region=~"eu-.*""#],
            &[r#"service="db""#],
        ]);
        r.starts_at_ns = Some(10 * MIN);
        let s = book.upsert(r, 0).await.unwrap();
        assert!(is_id(&s.id), "{}", s.id);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let api_eu = labels(&[("service", "api"), ("region", "eu-west")]);
        let api_us = labels(&[("service", "api"), ("region", "us-east")]);
        let db = labels(&[("service", "db")]);
        assert!(book.suppressing(&api_eu, 5 * MIN).is_empty(), "pending");
        assert_eq!(book.suppressing(&api_eu, 10 * MIN), vec![s.id.clone()]);
        assert!(book.suppressing(&api_us, 10 * MIN).is_empty());
        assert_eq!(book.suppressing(&db, 59 * MIN).len(), 1);
        assert!(
            book.suppressing(&db, 60 * MIN).is_empty(),
            "expired at its end"
        );

        // Durable: a second open sees it; expiring ends it now.
        let reopened = SuppressionBook::open(Some(dir.path())).unwrap();
        assert_eq!(reopened.get(&s.id).unwrap().as_ref(), &s);
        let expired = reopened.expire(&s.id, 20 * MIN).await.unwrap();
        assert_eq!(expired.state(20 * MIN), SuppressionState::Expired);
        assert!(reopened.suppressing(&db, 20 * MIN).is_empty());
        let third = SuppressionBook::open(Some(dir.path())).unwrap();
        assert_eq!(third.get(&s.id).unwrap().ends_at_ns, 20 * MIN);
        // Kept for five days after expiry, then dropped.
        assert_eq!(third.collect_garbage(21 * MIN).await.unwrap(), 0);
        assert_eq!(third.collect_garbage(6 * 24 * 60 * MIN).await.unwrap(), 1);
        assert!(third.list().is_empty());
    }
}
