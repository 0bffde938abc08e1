//! Authentication for every HTTP route, as one middleware: the token from
//! `Authorization` (or InfluxDB 1.x's `p` query parameter on `/write`), the
//! scope from the method and path in [`required_scope`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AuthConfig, AuthError, Authenticator, Scope, token_from_authorization, tokens};

/// The scope a request needs; `None` for the open routes. Routes not listed
/// need `admin`, so a route added later is closed until it is placed here.
pub fn required_scope(config: &AuthConfig, method: &Method, path: &str) -> Option<Scope> {
    let reading = method == Method::GET || method == Method::HEAD;
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.is_empty() && !name.contains('/'))
    };
    match path {
        "/health" | "/health/ready" => None,
        "/metrics" if config.public_metrics => None,
        "/status" if config.public_status_page => None,
        "/metrics" | "/status" | "/api/v1/status" | "/api/v1/alerts" | "/api/v1/plugins"
        | "/api/v2/status" => Some(Scope::Query),
        // Read-only, though they are POSTs: a query, a rule tried on
        // history, a suppression previewed.
        "/api/v1/sql" | "/api/v1/alerts/backtest" | "/api/v1/suppressions/preview" => {
            Some(Scope::Query)
        }
        "/api/v1/events" | "/api/v2/write" | "/write" | "/api/v1/prom/write" | "/v1/metrics"
        | "/v1/logs" | "/v1/traces" => Some(Scope::Write),
        "/api/v2/alerts" if !reading => Some(Scope::Write),
        "/api/v2/alerts" | "/api/v1/probes" | "/api/v1/suppressions" | "/api/v2/silences"
            if reading =>
        {
            Some(Scope::Query)
        }
        _ if under("/api/v1/ingest") || under("/api/v1/events") || under("/api/v1/heartbeat") => {
            (!reading).then_some(Scope::Write).or(Some(Scope::Admin))
        }
        _ if reading && (under("/api/v1/suppressions") || under("/api/v2/silence")) => {
            Some(Scope::Query)
        }
        // Persist, plugin reload, probe and suppression changes, the rest.
        _ => Some(Scope::Admin),
    }
}

/// The middleware: 401 without a valid token, 403 without the scope, 429
/// for a peer that failed too often.
pub async fn require(
    State(auth): State<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(scope) = required_scope(auth.config(), request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(token_from_authorization)
        .or_else(|| influx_v1_password(&request));
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let checked = auth
        .authenticate(token.as_deref(), peer)
        .await
        .and_then(|principal| principal.require(scope).map(|()| principal));
    match checked {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => {
            // Read (and drop) a small body before answering: over HTTP/2 an
            // answer sent while the request body is unread makes hyper
            // reset the stream, and curl then reports a failure although
            // the 401 arrived whole. A big or slow body is not waited for.
            let body = axum::body::to_bytes(request.into_body(), DRAIN_LIMIT);
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, body).await;
            refusal(&e)
        }
    }
}

/// How much of a refused request's body is read before answering, and for
/// how long at most.
const DRAIN_LIMIT: usize = 64 << 10;
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// InfluxDB 1.x clients send credentials as `?u=…&p=…` on `/write`.
fn influx_v1_password(request: &Request) -> Option<String> {
    if request.uri().path() != "/write" {
        return None;
    }
    let query = request.uri().query()?;
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("p=")?;
        (value.len() <= tokens::MAX_TOKEN_LEN).then(|| value.to_string())
    })
}

fn refusal(error: &AuthError) -> Response {
    let status = crate::Error::Auth(error.clone()).http_status();
    let body = serde_json::json!({ "error": error.to_string() });
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    match error {
        AuthError::Missing | AuthError::Invalid => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"weir\""),
            );
        }
        AuthError::TooManyFailures { retry_after } => {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
        }
        AuthError::Forbidden { .. } => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_the_scope_it_needs() {
        let config = AuthConfig {
            data_dir: "/nonexistent".into(),
            config_tokens: vec![],
            required: true,
            public_metrics: false,
            public_status_page: false,
            failures: super::super::LimiterConfig {
                burst: 1,
                refill: std::time::Duration::from_secs(1),
            },
        };
        let (get, post, put, delete) = (Method::GET, Method::POST, Method::PUT, Method::DELETE);
        use Scope::{Admin, Query, Write};
        for (method, path, want) in [
            (&get, "/health", None),
            (&get, "/health/ready", None),
            (&get, "/metrics", Some(Query)),
            (&get, "/status", Some(Query)),
            (&post, "/api/v1/sql", Some(Query)),
            (&post, "/api/v1/alerts/backtest", Some(Query)),
            (&post, "/api/v1/persist", Some(Admin)),
            (&post, "/api/v1/plugins/reload", Some(Admin)),
            (&get, "/api/v1/plugins", Some(Query)),
            (&post, "/api/v1/ingest/nagios", Some(Write)),
            (&post, "/api/v1/ingest/a/b", Some(Admin)),
            (&post, "/api/v1/ingest/", Some(Admin)),
            (&post, "/api/v1/events", Some(Write)),
            (&post, "/api/v1/events/webhook", Some(Write)),
            (&post, "/api/v1/heartbeat/nightly", Some(Write)),
            (&post, "/api/v2/alerts", Some(Write)),
            (&get, "/api/v2/alerts", Some(Query)),
            (&post, "/api/v2/write", Some(Write)),
            (&post, "/write", Some(Write)),
            (&post, "/api/v1/prom/write", Some(Write)),
            (&post, "/v1/traces", Some(Write)),
            (&get, "/api/v1/probes", Some(Query)),
            (&put, "/api/v1/probes/web", Some(Admin)),
            (&delete, "/api/v1/probes/web", Some(Admin)),
            (&get, "/api/v1/suppressions", Some(Query)),
            (&post, "/api/v1/suppressions", Some(Admin)),
            (&post, "/api/v1/suppressions/preview", Some(Query)),
            (&get, "/api/v1/suppressions/abc", Some(Query)),
            (&put, "/api/v1/suppressions/abc", Some(Admin)),
            (&delete, "/api/v1/suppressions/abc", Some(Admin)),
            (&get, "/api/v2/silences", Some(Query)),
            (&post, "/api/v2/silences", Some(Admin)),
            (&get, "/api/v2/silence/abc", Some(Query)),
            (&delete, "/api/v2/silence/abc", Some(Admin)),
            (&get, "/nothing/here", Some(Admin)),
            (&get, "/health/../metrics", Some(Admin)),
        ] {
            assert_eq!(
                required_scope(&config, method, path),
                want,
                "{method} {path}"
            );
        }
        let open = AuthConfig {
            public_metrics: true,
            public_status_page: true,
            ..config
        };
        assert_eq!(required_scope(&open, &get, "/metrics"), None);
        assert_eq!(required_scope(&open, &get, "/status"), None);
    }
}
