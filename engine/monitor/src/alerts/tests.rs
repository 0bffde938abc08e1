use std::collections::BTreeMap;

use super::*;
use crate::config::{ReceiverSection, RuleSection};
use crate::rule::ALERTNAME;

const SEC: i64 = 1_000_000_000;

fn rule(extra: &str) -> RuleDef {
    let section: RuleSection = toml::from_str(&format!(
        "query = 'SELECT service_name FROM t' \n priority = 'high' \n summary = '${{labels.service_name}} down' \n {extra}"
    ))
    .unwrap();
    RuleDef::from_section(
        "down",
        &section,
        &BTreeMap::<String, ReceiverSection>::new(),
    )
    .unwrap()
}

fn obs(service: &str, firing: bool, checked_at: Option<i64>) -> Observation {
    Observation {
        labels: BTreeMap::from([
            ("service_name".to_string(), service.to_string()),
            (ALERTNAME.to_string(), "down".to_string()),
        ]),
        firing,
        value: Some(1.0),
        checked_at_ns: checked_at,
    }
}

fn route(_: &RuleDef, _: &BTreeMap<String, String>) -> Vec<String> {
    vec!["chat".into(), "pager".into()]
}

/// What the book owes at `now_ns`: its groups flushed, saved, handed out.
async fn settle(book: &AlertBook, now_ns: i64) -> Due {
    book.flush_groups(now_ns);
    book.save().await.unwrap();
    book.take_due()
}

fn state(book: &AlertBook, service: &str) -> Option<AlertState> {
    book.alerts()
        .into_iter()
        .find(|a| a.labels["service_name"] == service)
        .map(|a| a.state)
}

#[tokio::test]
async fn consecutive_counts_checks_not_evaluations() {
    let book = AlertBook::open(None).unwrap();
    let rule = rule("consecutive = 3");
    let mut t = 0;
    let mut eval = |book: &AlertBook, firing, check| {
        t += 10 * SEC;
        book.apply(&rule, &[obs("api", firing, Some(check))], true, t, &route)
    };
    eval(&book, true, 1);
    // The same failed check seen again does not count.
    eval(&book, true, 1);
    eval(&book, true, 1);
    assert_eq!(state(&book, "api"), Some(AlertState::Pending));
    eval(&book, true, 2);
    assert_eq!(state(&book, "api"), Some(AlertState::Pending));
    let applied = eval(&book, true, 3);
    assert_eq!(applied.transitions, 1);
    assert_eq!(state(&book, "api"), Some(AlertState::Firing));
    eval(&book, true, 4);
    // Firing owes one notification per receiver, once.
    let due = settle(&book, 1000 * SEC).await;
    let firing: Vec<_> = due
        .notifications
        .iter()
        .map(|n| (n.receiver.as_str(), n.status()))
        .collect();
    assert_eq!(
        firing,
        [("chat", AlertState::Firing), ("pager", AlertState::Firing)]
    );
    let moves: Vec<_> = due.history.iter().map(|h| (h.from, h.to)).collect();
    assert_eq!(
        moves,
        [
            (AlertState::Inactive, AlertState::Pending),
            (AlertState::Pending, AlertState::Firing)
        ]
    );
    assert_eq!(due.notifications[0].alerts[0].summary, "api down");
    // Recovery resolves, and owes the resolution.
    eval(&book, false, 5);
    assert_eq!(state(&book, "api"), Some(AlertState::Resolved));
    let due = settle(&book, 2000 * SEC).await;
    assert_eq!(due.notifications.len(), 2);
    assert!(
        due.notifications
            .iter()
            .all(|n| n.status() == AlertState::Resolved)
    );
}

#[tokio::test]
async fn without_checked_at_every_evaluation_counts_and_a_pass_resets() {
    let book = AlertBook::open(None).unwrap();
    let rule = rule("consecutive = 2");
    book.apply(&rule, &[obs("a", true, None)], true, SEC, &route);
    book.apply(&rule, &[obs("a", false, None)], true, 2 * SEC, &route);
    // Never fired: it leaves quietly.
    assert_eq!(state(&book, "a"), None);
    book.apply(&rule, &[obs("a", true, None)], true, 3 * SEC, &route);
    book.apply(&rule, &[obs("a", true, None)], true, 4 * SEC, &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Firing));
}

#[test]
fn for_waits_and_keep_firing_for_holds() {
    let book = AlertBook::open(None).unwrap();
    let rule = rule("for = '3m' \n keep_firing_for = '2m'");
    let at = |s: i64| s * SEC;
    book.apply(&rule, &[obs("a", true, None)], true, at(0), &route);
    book.apply(&rule, &[obs("a", true, None)], true, at(120), &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Pending));
    book.apply(&rule, &[obs("a", true, None)], true, at(180), &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Firing));
    // Absent from the answer: not failing; held for 2 minutes.
    book.apply(&rule, &[], true, at(240), &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Firing));
    book.apply(&rule, &[], true, at(300), &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Resolved));
}

#[test]
fn partial_reports_leave_other_instances_alone() {
    let book = AlertBook::open(None).unwrap();
    let rule = rule("");
    book.apply(
        &rule,
        &[obs("a", true, None), obs("b", true, None)],
        true,
        SEC,
        &route,
    );
    book.apply(&rule, &[obs("a", false, None)], false, 2 * SEC, &route);
    assert_eq!(state(&book, "a"), Some(AlertState::Resolved));
    assert_eq!(state(&book, "b"), Some(AlertState::Firing));
}

#[tokio::test]
async fn what_is_owed_survives_a_crash_and_nothing_unsaved_is_handed_out() {
    let dir = tempfile::tempdir().unwrap();
    let rule = rule("");
    {
        let book = AlertBook::open(Some(dir.path())).unwrap();
        book.apply(&rule, &[obs("a", true, None)], true, SEC, &route);
        // Not on disk yet: nothing may be sent.
        book.flush_groups(SEC);
        let due = book.take_due();
        assert!(due.notifications.is_empty() && due.history.is_empty());
        book.save().await.unwrap();
        let due = book.take_due();
        assert_eq!(due.notifications.len(), 2);
        // Handed out once only.
        assert!(book.take_due().notifications.is_empty());
        // One is delivered; then the process dies.
        book.notification_done(due.notifications[0].id);
        book.save().await.unwrap();
    }
    let book = AlertBook::open(Some(dir.path())).unwrap();
    assert_eq!(state(&book, "a"), Some(AlertState::Firing));
    let due = book.take_due();
    assert_eq!(
        due.notifications.len(),
        1,
        "only the undelivered one is owed"
    );
    assert_eq!(due.notifications[0].receiver, "pager");
    assert_eq!(due.history.len(), 1, "the transition is not lost");
    // Still failing after the restart: not a new alert, nothing new owed.
    book.apply(&rule, &[obs("a", true, None)], true, 2 * SEC, &route);
    assert!(settle(&book, 3 * SEC).await.notifications.is_empty());
}

#[test]
fn a_damaged_book_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alerts.json"), b"{not json").unwrap();
    let err = AlertBook::open(Some(dir.path())).err().unwrap().to_string();
    assert!(err.contains("alerts.json is damaged"), "{err}");
}

#[tokio::test]
async fn alerts_of_removed_rules_resolve_and_say_so() {
    let book = AlertBook::open(None).unwrap();
    let rule = rule("");
    book.apply(&rule, &[obs("a", true, None)], true, SEC, &route);
    let _ = settle(&book, SEC).await;
    assert_eq!(book.retire(&|a| a.rule != "down", 2 * SEC), 1);
    assert_eq!(state(&book, "a"), Some(AlertState::Resolved));
    let due = settle(&book, 2 * SEC).await;
    assert_eq!(due.notifications.len(), 2);
    assert!(
        due.notifications
            .iter()
            .all(|n| n.status() == AlertState::Resolved)
    );
}

/// A firing matched by an active suppression owes nothing and records who
/// withheld it; once the suppression is expired the next sweep owes the
/// firing, once; the resolution then goes out as usual.
#[tokio::test]
async fn a_suppression_withholds_the_firing_until_it_ends() {
    use crate::suppress::{Matcher, SuppressionBook, SuppressionRequest};

    let suppressions = SuppressionBook::open(None).unwrap();
    let book = AlertBook::open(None)
        .unwrap()
        .with_suppressions(suppressions.clone());
    let made = suppressions
        .upsert(
            SuppressionRequest {
                targets: vec![vec![Matcher::parse(r#"service_name="api""#).unwrap()]],
                starts_at_ns: Some(0),
                ends_at_ns: 3600 * SEC,
                created_by: "ana".into(),
                comment: "deploy".into(),
                ..Default::default()
            },
            0,
        )
        .await
        .unwrap();
    let rule = rule("");
    book.apply(
        &rule,
        &[obs("api", true, None), obs("web", true, None)],
        true,
        10 * SEC,
        &route,
    );
    let due = settle(&book, 10 * SEC).await;
    let notified: Vec<_> = due
        .notifications
        .iter()
        .map(|n| n.alerts[0].labels["service_name"].as_str())
        .collect();
    assert_eq!(notified, ["web", "web"], "api's firing is withheld");
    let api = due
        .history
        .iter()
        .find(|t| t.labels["service_name"] == "api" && t.to == AlertState::Firing)
        .unwrap();
    assert_eq!(api.suppressed_by, vec![made.id.clone()]);
    // Nothing changes while it lasts.
    assert_eq!(book.resweep(20 * SEC), 0);

    suppressions.expire(&made.id, 30 * SEC).await.unwrap();
    assert_eq!(book.resweep(31 * SEC), 2, "api's firing, to both receivers");
    assert_eq!(book.resweep(32 * SEC), 0, "once");
    let mut owed = settle(&book, 33 * SEC).await.notifications;
    book.apply(&rule, &[obs("web", true, None)], true, 40 * SEC, &route);
    owed.extend(settle(&book, 40 * SEC).await.notifications);
    let owed: Vec<_> = owed
        .iter()
        .map(|n| (n.alerts[0].labels["service_name"].as_str(), n.status()))
        .collect();
    assert_eq!(
        owed,
        [
            ("api", AlertState::Firing),
            ("api", AlertState::Firing),
            ("api", AlertState::Resolved),
            ("api", AlertState::Resolved)
        ]
    );
}

fn grouped(wait_s: u64) -> crate::groups::Grouping {
    crate::groups::Grouping {
        by: Some(vec![ALERTNAME.to_string()]),
        wait: std::time::Duration::from_secs(wait_s),
        ..crate::groups::Grouping::default()
    }
}

/// Killed while a group waits out its group_wait: after the restart the
/// group is told once, on time — not before, not twice, not never.
#[tokio::test]
async fn a_group_waiting_when_killed_notifies_once_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rule = rule("");
    {
        let book = AlertBook::open(Some(dir.path()))
            .unwrap()
            .with_grouping(grouped(30));
        let failing: Vec<_> = ["a", "b", "c"].iter().map(|s| obs(s, true, None)).collect();
        book.apply(&rule, &failing, true, 0, &route);
        assert!(settle(&book, 10 * SEC).await.notifications.is_empty());
        assert_eq!(book.groups().len(), 1);
        // kill -9: the book as last saved is all that is left.
    }
    let reopen = || {
        AlertBook::open(Some(dir.path()))
            .unwrap()
            .with_grouping(grouped(30))
    };
    let book = reopen();
    assert!(settle(&book, 29 * SEC).await.notifications.is_empty());
    let due = settle(&book, 30 * SEC).await;
    let told: Vec<_> = due
        .notifications
        .iter()
        .map(|n| (n.receiver.as_str(), n.alerts.len()))
        .collect();
    assert_eq!(told, [("chat", 3), ("pager", 3)]);
    drop(book);
    // Killed again right after deciding (and saving) that: the same two
    // are owed again, nothing new is decided.
    let book = reopen();
    let due = settle(&book, 31 * SEC).await;
    assert_eq!(due.notifications.len(), 2);
    assert!(due.notifications.iter().all(|n| n.seq == 1));
}

#[tokio::test]
async fn events_flap_hold_fire_on_time_and_lapse() {
    use crate::events::{EventBody, check};

    let book = AlertBook::open(None).unwrap();
    let retired = RetiredHosts::default();
    let event = |status: &str, extra: serde_json::Value, now: i64| {
        let mut body = serde_json::json!({"monitor": "job", "status": status});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        check("e", serde_json::from_value::<EventBody>(body).unwrap(), now).unwrap()
    };
    let flap = serde_json::json!({"filters": [{"type": "ignore-flap", "min-age": "10s"}]});
    let apply = |e: CheckedEvent, now: i64| book.apply_events(&[e], &retired, now, &route).0[0];
    // 200 flaps: nothing but held and cancelled.
    for i in 0..100 {
        let t = i * SEC / 100;
        assert_eq!(apply(event("unhealthy", flap.clone(), t), t), Outcome::Held);
        assert_eq!(
            apply(event("healthy", flap.clone(), t), t),
            Outcome::Dropped(DropReason::Flap)
        );
    }
    assert!(book.alerts().is_empty());
    // Held, and still unhealthy at min-age: fires then.
    assert_eq!(
        apply(event("unhealthy", flap.clone(), 2 * SEC), 2 * SEC),
        Outcome::Held
    );
    assert_eq!(book.events_due(11 * SEC, &route), 0);
    assert_eq!(book.events_due(12 * SEC, &route), 1);
    assert_eq!(book.alerts()[0].state, AlertState::Firing);
    assert_eq!(book.alerts()[0].active_since_ns, 2 * SEC);
    assert_eq!(
        apply(event("unhealthy", flap.clone(), 13 * SEC), 13 * SEC),
        Outcome::Dropped(DropReason::Unchanged)
    );
    // An alert with an expiry lapses unless renewed.
    let lapse = serde_json::json!({"ends-at": "1970-01-01T00:01:00Z"});
    let other = |status| {
        let mut e = event(status, lapse.clone(), 20 * SEC);
        e.labels.insert("service".into(), "x".into());
        e
    };
    assert_eq!(apply(other("unhealthy"), 20 * SEC), Outcome::Passed);
    assert_eq!(book.events_due(59 * SEC, &route), 0);
    assert_eq!(book.events_due(60 * SEC, &route), 1);
    assert!(
        book.alerts()
            .iter()
            .any(|a| a.labels.contains_key("service") && a.state == AlertState::Resolved)
    );
}
