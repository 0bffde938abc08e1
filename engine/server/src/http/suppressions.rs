//! Suppressions over HTTP: Weir's API, and Alertmanager's API v2 silences
//! so `amtool silence add|query|expire` work against Weir unmodified.
//!
//! | route | what |
//! |---|---|
//! | `GET /api/v1/suppressions` | every suppression with its state |
//! | `POST /api/v1/suppressions` | creates one; answers it and its blast radius |
//! | `POST /api/v1/suppressions/preview` | checks one and reports its blast radius, making nothing |
//! | `GET /api/v1/suppressions/{id}` | one, with the notifications it withheld (`weir_suppressed`) |
//! | `PUT /api/v1/suppressions/{id}` | changes one (its times may move) |
//! | `DELETE /api/v1/suppressions/{id}` | expires one now |
//! | `GET /api/v2/silences`, `POST /api/v2/silences`, `GET`/`DELETE /api/v2/silence/{id}` | Alertmanager API v2 |
//! | `GET /api/v2/status` | enough of Alertmanager's status for amtool |

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use weir_monitor::suppress::wire::{
    AmPostableSilence, SuppressionBody, SuppressionView, am_silence,
};
use weir_monitor::suppress::{Matcher, SuppressionRequest};

use super::HttpState;
use crate::Error;

pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/api/v1/suppressions", get(list).post(create))
        .route("/api/v1/suppressions/preview", post(preview))
        .route(
            "/api/v1/suppressions/{id}",
            get(detail).put(update).delete(expire),
        )
        .route("/api/v2/silences", get(am_list).post(am_post))
        .route("/api/v2/silence/{id}", get(am_get).delete(am_delete))
        .route("/api/v2/status", get(am_status))
}

fn now_ns() -> i64 {
    weir_pipeline::now_ns()
}

fn body(bytes: &[u8], id: Option<String>) -> Result<(SuppressionRequest, bool), Error> {
    let body: SuppressionBody = serde_json::from_slice(bytes).map_err(|e| {
        Error::Decode(format!(
            "expected a suppression: {{\"targets\": [[\"service=\\\"api\\\"\"]], \"duration\": \"2h\", \"created_by\": …, \"comment\": …}}: {e}"
        ))
    })?;
    Ok(body.into_request(id, now_ns())?)
}

async fn list(State(state): State<Arc<HttpState>>) -> Response {
    let now = now_ns();
    let views: Vec<SuppressionView> = state
        .monitor
        .suppressions()
        .iter()
        .map(|s| SuppressionView::new(s, now))
        .collect();
    axum::Json(serde_json::json!({ "suppressions": views })).into_response()
}

async fn create(State(state): State<Arc<HttpState>>, bytes: Bytes) -> Result<Response, Error> {
    let (request, force) = body(&bytes, None)?;
    save(&state, request, force).await
}

async fn update(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Error> {
    let (request, force) = body(&bytes, Some(id))?;
    save(&state, request, force).await
}

async fn save(
    state: &HttpState,
    request: SuppressionRequest,
    force: bool,
) -> Result<Response, Error> {
    let (suppression, radius) = state.monitor.put_suppression(request, force).await?;
    Ok(axum::Json(serde_json::json!({
        "suppression": SuppressionView::new(&suppression, now_ns()),
        "blast_radius": radius,
    }))
    .into_response())
}

async fn preview(State(state): State<Arc<HttpState>>, bytes: Bytes) -> Result<Response, Error> {
    let (request, _) = body(&bytes, None)?;
    let radius = state.monitor.preview_suppression(&request).await?;
    Ok(axum::Json(serde_json::json!({ "blast_radius": radius })).into_response())
}

async fn detail(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let suppression = state.monitor.suppression(&id)?;
    let withheld = state.monitor.suppressed_by(&id).await?;
    Ok(axum::Json(serde_json::json!({
        "suppression": SuppressionView::new(&suppression, now_ns()),
        "withheld": withheld,
    }))
    .into_response())
}

async fn expire(
    State(state): State<Arc<HttpState>>,
    Path(id): Path<String>,
) -> Result<Response, Error> {
    let expired = state.monitor.expire_suppression(&id).await?;
    Ok(axum::Json(serde_json::json!({
        "suppression": SuppressionView::new(&expired, now_ns()),
    }))
    .into_response())
}

/// Alertmanager answers errors of its v2 API as a JSON string with 400 (or
/// 404); amtool prints that string.
pub(super) fn am_error(e: impl Into<Error>) -> Response {
    let e = e.into();
    let status = match e.http_status() {
        StatusCode::NOT_FOUND => StatusCode::NOT_FOUND,
        s if s.is_server_error() => s,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, axum::Json(e.to_string())).into_response()
}

async fn am_list(
    State(state): State<Arc<HttpState>>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    // `filter` matchers (amtool's `silence query NAME=VALUE`): keep
    // silences with a matcher on each filter's label whose value the
    // filter accepts, as Alertmanager does.
    let mut filters = Vec::new();
    for (key, value) in &query {
        if key == "filter" {
            match Matcher::parse(value) {
                Ok(m) => filters.push(m),
                Err(e) => return am_error(Error::Decode(format!("filter {value:?}: {e}"))),
            }
        }
    }
    let now = now_ns();
    let silences: Vec<serde_json::Value> = state
        .monitor
        .suppressions()
        .iter()
        .filter(|s| {
            filters.iter().all(|f| {
                s.targets.iter().flatten().any(|m| {
                    m.name == f.name
                        && f.matches(&BTreeMap::from([(f.name.clone(), m.value.clone())]))
                })
            })
        })
        .map(|s| am_silence(s, now))
        .collect();
    axum::Json(silences).into_response()
}

async fn am_post(State(state): State<Arc<HttpState>>, bytes: Bytes) -> Response {
    let request = match serde_json::from_slice::<AmPostableSilence>(&bytes) {
        Ok(silence) => silence.into_request(),
        Err(e) => return am_error(Error::Decode(format!("expected a PostableSilence: {e}"))),
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => return am_error(e),
    };
    // The Alertmanager API has no way to force: over the blast-radius
    // limit, use Weir's API with "force": true.
    match state.monitor.put_suppression(request, false).await {
        Ok((suppression, _)) => {
            axum::Json(serde_json::json!({ "silenceID": suppression.id })).into_response()
        }
        Err(e) => am_error(e),
    }
}

async fn am_get(State(state): State<Arc<HttpState>>, Path(id): Path<String>) -> Response {
    match state.monitor.suppression(&id) {
        Ok(s) => axum::Json(am_silence(&s, now_ns())).into_response(),
        Err(e) => am_error(e),
    }
}

async fn am_delete(State(state): State<Arc<HttpState>>, Path(id): Path<String>) -> Response {
    match state.monitor.expire_suppression(&id).await {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => am_error(e),
    }
}

async fn am_status(State(state): State<Arc<HttpState>>) -> Response {
    let uptime = weir_monitor::suppress::wire::format_time(state.started_ns);
    axum::Json(serde_json::json!({
        "cluster": { "status": "disabled", "peers": [] },
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "branch": "", "revision": "", "buildUser": "weir", "buildDate": "",
            "goVersion": "none (Weir)"
        },
        "config": { "original": "" },
        "uptime": uptime,
    }))
    .into_response()
}
