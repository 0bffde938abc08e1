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
