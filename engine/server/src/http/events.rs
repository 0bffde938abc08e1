//! Events over HTTP: Weir's events API, and Alertmanager's API v2 alerts
//! (what Prometheus posts to its alertmanagers, what `amtool alert query`
//! reads).
//!
//! | route | what |
//! |---|---|
//! | `POST /api/v1/events` | one event (JSON object), an array of them, or `{"events": [...]}`; answers what became of each |
//! | `POST /api/v1/events/{source}` | a raw body (a Datadog webhook, a Nagios check result, an Alertmanager webhook …) for the source's adapter; each row it makes is an event (see `weir_monitor::events::adapted`) |
//! | `POST /api/v2/alerts` | Alertmanager `PostableAlert`s; each becomes an event |
//! | `GET /api/v2/alerts` | firing alerts as Alertmanager `GettableAlert`s (`filter`, `active`, `silenced` parameters) |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use weir_monitor::events::alertmanager::{AlertFilter, PostableAlert, gettable_alert};
use weir_monitor::events::{EventBody, EventSource};
use weir_monitor::suppress::{MatchOp, Matcher};

use super::HttpState;
use super::suppressions::am_error;
use crate::Error;

pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/v1/events", post(events))
        .route("/api/v1/events/{source}", post(adapted_events))
        .route("/api/v2/alerts", post(am_post).get(am_list))
}

/// One event (an object), an array of them, or `{"events": [...]}`.
async fn events(State(state): State<Arc<HttpState>>, bytes: Bytes) -> Result<Response, Error> {
    // Decoded as a value first, then each event on its own, so an error
    // names the event and key at fault (an untagged enum would only say
    // that no shape matched).
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(format!("expected JSON: {e}")))?;
    let bodies = match value {
        serde_json::Value::Array(items) => decode_each(items)?,
        serde_json::Value::Object(mut object) if object.contains_key("events") => {
            match object.remove("events") {
                Some(serde_json::Value::Array(items)) if object.is_empty() => decode_each(items)?,
                _ => {
                    return Err(Error::Decode(
                        "expected {\"events\": [ … ]} and no other key".into(),
                    ));
                }
            }
        }
        one => decode_each(vec![one])?,
    };
    answer(
        state
            .monitor
            .receive_events(bodies, EventSource::Api)
            .await?,
    )
}

/// A raw body through the source's adapter; its rows are the events.
async fn adapted_events(
    State(state): State<Arc<HttpState>>,
    axum::extract::Path(source): axum::extract::Path<String>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, Error> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let batches = state
        .write_path
        .adapt_raw(&source, content_type, &body)
        .await?;
    let bodies = weir_monitor::events::adapted::events_from_batches(&batches)?;
    answer(
        state
            .monitor
            .receive_events(bodies, EventSource::Adapter)
            .await?,
    )
}

fn answer(reports: Vec<weir_monitor::EventReport>) -> Result<Response, Error> {
    let count = |outcome: &str| reports.iter().filter(|r| r.outcome == outcome).count();
    Ok(axum::Json(serde_json::json!({
        "passed": count("passed"),
        "held": count("held"),
        "dropped": count("dropped"),
        "events": reports,
    }))
    .into_response())
}

fn decode_each(items: Vec<serde_json::Value>) -> Result<Vec<EventBody>, Error> {
    if items.len() > weir_monitor::events::MAX_EVENTS_PER_REQUEST {
        return Err(Error::Decode(format!(
            "{} events, more than the {} one request may carry",
            items.len(),
            weir_monitor::events::MAX_EVENTS_PER_REQUEST
        )));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            serde_json::from_value(item).map_err(|e| {
                Error::Decode(format!(
                    "events[{i}]: {e} (an event is {{\"monitor\": …, \"status\": \"healthy\" or \"unhealthy\", …}})"
                ))
            })
        })
        .collect()
}

async fn am_post(State(state): State<Arc<HttpState>>, bytes: Bytes) -> Response {
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&bytes) {
        Ok(alerts) => alerts,
        Err(e) => {
            return am_error(Error::Decode(format!(
                "expected an array of PostableAlert: {e}"
            )));
        }
    };
    if alerts.len() > weir_monitor::events::MAX_EVENTS_PER_REQUEST {
        return am_error(Error::Decode(format!(
            "{} alerts, more than the {} one request may carry",
            alerts.len(),
            weir_monitor::events::MAX_EVENTS_PER_REQUEST
        )));
    }
    let now = weir_pipeline::now_ns();
    let bodies: Result<Vec<EventBody>, _> = alerts
        .into_iter()
        .enumerate()
        .map(|(i, alert)| alert.into_event(&format!("alerts[{i}]"), now))
        .collect();
    let result = match bodies {
        Ok(bodies) => {
            state
                .monitor
                .receive_events(bodies, EventSource::Alertmanager)
                .await
        }
        Err(e) => Err(e),
    };
    match result {
        // Alertmanager answers an empty 200.
        Ok(_) => axum::http::StatusCode::OK.into_response(),
        Err(e) => am_error(e),
    }
}

async fn am_list(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let mut filters = Vec::new();
    let mut receiver = None;
    let mut filter = AlertFilter::default();
    for (key, value) in &query {
        let flag = || match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(Error::Decode(format!(
                "{key}={value:?}: expected true or false"
            ))),
        };
        let parsed = match key.as_str() {
            "filter" => Matcher::parse(value)
                .map(|m| filters.push(m))
                .map_err(|e| Error::Decode(format!("filter {value:?}: {e}"))),
            "active" => flag().map(|v| filter.active = v),
            "silenced" => flag().map(|v| filter.silenced = v),
            // An anchored regex on receiver names, as in Alertmanager.
            "receiver" => Matcher::new("receiver", MatchOp::Regex, value)
                .map(|m| receiver = Some(m))
                .map_err(|e| Error::Decode(format!("receiver {value:?}: {e}"))),
            // Weir has no inhibition, and processes every alert on arrival:
            // no alert is inhibited or unprocessed, whatever is asked.
            _ => Ok(()),
        };
        if let Err(e) = parsed {
            return am_error(e);
        }
    }
    let alerts: Vec<serde_json::Value> = state
        .monitor
        .alerts()
        .iter()
        .filter(|a| filters.iter().all(|m| m.matches(&a.labels)))
        .filter(|a| {
            receiver.as_ref().is_none_or(|m| {
                a.receivers.iter().any(|r| {
                    m.matches(&std::collections::BTreeMap::from([(
                        "receiver".to_string(),
                        r.clone(),
                    )]))
                })
            })
        })
        .filter_map(|a| gettable_alert(a, &filter))
        .collect();
    axum::Json(alerts).into_response()
}
