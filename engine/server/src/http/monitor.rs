//! The monitor's HTTP routes: the status page, alerts, probes and
//! heartbeats.
//!
//! | route | what |
//! |---|---|
//! | `GET /status` | the status page (HTML, no scripts or external assets) |
//! | `GET /api/v1/status` | the same as JSON |
//! | `GET /api/v1/alerts` | every alert instance (also SQL: `weir_alerts`) |
//! | `GET /api/v1/probes` | probes with their last result |
//! | `PUT` or `POST /api/v1/probes/{name}` | creates or replaces a probe; JSON body with the keys of `[probes.NAME]`; kept across restarts |
//! | `DELETE /api/v1/probes/{name}` | removes a probe made through the API |
//! | `POST /api/v1/heartbeat/{name}` | a push monitor's job is alive |
//! | `POST /api/v1/alerts/backtest` | `{"config": "<TOML with [rules.NAME]…>", "from": RFC 3339, "to": RFC 3339, "step": "5m"?}`: what those rules would have done over stored history (`weir alerts backtest`) |

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use super::HttpState;
use crate::Error;

pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/status", get(status_page))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/alerts/backtest", post(backtest))
        .route("/api/v1/probes", get(probes))
        .route(
            "/api/v1/probes/{name}",
            put(put_probe).post(put_probe).delete(delete_probe),
        )
        .route("/api/v1/heartbeat/{name}", post(heartbeat))
}

async fn status_page(State(state): State<Arc<HttpState>>) -> Result<Response, Error> {
    let report = state.monitor.status().await?;
    let html = weir_monitor::render_status_html(&report);
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response())
}

async fn status_json(State(state): State<Arc<HttpState>>) -> Result<Response, Error> {
    let report = state.monitor.status().await?;
    Ok(axum::Json(&*report).into_response())
}

async fn alerts(State(state): State<Arc<HttpState>>) -> Response {
    axum::Json(serde_json::json!({ "alerts": state.monitor.alerts() })).into_response()
}

async fn probes(State(state): State<Arc<HttpState>>) -> Result<Response, Error> {
    let probes = state.monitor.probes()?;
    Ok(axum::Json(serde_json::json!({ "probes": probes })).into_response())
}

async fn put_probe(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Error> {
    let section: weir_monitor::ProbeSection = serde_json::from_slice(&body).map_err(|e| {
        Error::Decode(format!(
            "expected a JSON object with the keys of [probes.NAME] (url or tcp, interval, …): {e}"
        ))
    })?;
    state.monitor.put_probe(&name, section).await?;
    Ok(axum::Json(serde_json::json!({ "probe": name })).into_response())
}

async fn delete_probe(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    state.monitor.delete_probe(&name).await?;
    Ok(axum::Json(serde_json::json!({ "deleted": name })).into_response())
}

async fn heartbeat(
    State(state): State<Arc<HttpState>>,
    Path(name): Path<String>,
) -> Result<Response, Error> {
    state.monitor.heartbeat(&name).await?;
    Ok(axum::Json(serde_json::json!({ "heartbeat": name })).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestRequest {
    /// A config file's text: its `[rules.NAME]`, `[receivers.NAME]` and
    /// grouping settings are used, anything else is ignored.
    config: String,
    from: String,
    to: String,
    step: Option<String>,
}

async fn backtest(State(state): State<Arc<HttpState>>, body: Bytes) -> Result<Response, Error> {
    let request: BacktestRequest = serde_json::from_slice(&body).map_err(|e| {
        Error::Decode(format!(
            "expected {{\"config\", \"from\", \"to\", \"step\"?}}: {e}"
        ))
    })?;
    let args = crate::ServeArgs::from_toml(&request.config)
        .map_err(|e| Error::Decode(format!("config: {e}")))?;
    let time = |what: &str, text: &str| -> Result<i64, Error> {
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .ok_or_else(|| Error::Decode(format!("{what}: {text:?} is not an RFC 3339 time")))
    };
    let step = request
        .step
        .as_deref()
        .map(|text| {
            humantime::parse_duration(text)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| Error::Decode(format!("step: {text:?} is not a duration like 5m")))
        })
        .transpose()?;
    let grouping = weir_monitor::groups::GroupingOverrides::parse(
        "",
        args.group_by.as_deref(),
        args.group_wait.as_deref(),
        args.group_interval.as_deref(),
        args.repeat_interval.as_deref(),
        args.group_window.as_deref(),
    )?;
    let report = state
        .monitor
        .backtest(
            &args.monitor_sections(),
            &grouping,
            time("from", &request.from)?,
            time("to", &request.to)?,
            step,
        )
        .await?;
    Ok(axum::Json(report).into_response())
}
