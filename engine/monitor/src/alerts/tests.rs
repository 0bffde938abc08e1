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
    book.save().await.unwrap();
    let due = book.take_due();
    let firing: Vec<_> = due
        .notifications
        .iter()
        .map(|n| (n.receiver.as_str(), n.to))
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
    assert_eq!(due.notifications[0].alert.summary, "api down");
    // Recovery resolves, and owes the resolution.
    eval(&book, false, 5);
    assert_eq!(state(&book, "api"), Some(AlertState::Resolved));
    book.save().await.unwrap();
    let due = book.take_due();
    assert_eq!(due.notifications.len(), 2);
    assert!(
        due.notifications
            .iter()
            .all(|n| n.to == AlertState::Resolved)
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
    book.save().await.unwrap();
    assert!(book.take_due().notifications.is_empty());
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
    book.save().await.unwrap();
    let _ = book.take_due();
    assert_eq!(book.retire(&|a| a.rule != "down", 2 * SEC), 1);
    assert_eq!(state(&book, "a"), Some(AlertState::Resolved));
    book.save().await.unwrap();
    let due = book.take_due();
    assert_eq!(due.notifications.len(), 2);
    assert!(
        due.notifications
            .iter()
            .all(|n| n.to == AlertState::Resolved)
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
    book.save().await.unwrap();
    let due = book.take_due();
    let notified: Vec<_> = due
        .notifications
        .iter()
        .map(|n| n.alert.labels["service_name"].as_str())
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
    book.apply(&rule, &[obs("web", true, None)], true, 40 * SEC, &route);
    book.save().await.unwrap();
    let due = book.take_due();
    let owed: Vec<_> = due
        .notifications
        .iter()
        .map(|n| (n.alert.labels["service_name"].as_str(), n.to))
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
