//! Authentication for every gRPC service, as one tower layer in front of
//! all of them: the token from the `authorization` metadata, the scope from
//! the method's path. The [`Principal`] goes into the request's extensions
//! for services whose scope depends on the request (Flight `DoPut` writes
//! a table or binds query parameters).

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;
use tonic::transport::server::TcpConnectInfo;

use super::{AuthError, Authenticator, Principal, Scope, token_from_authorization};

/// What a gRPC method requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Health checks and reflection.
    Open,
    /// Any valid token; the service checks the scope itself.
    AnyToken,
    Scope(Scope),
}

/// The access a method (`/package.Service/Method`) needs. Methods not
/// listed need `admin`: a service added later is closed until it is placed.
pub fn access(path: &str) -> Access {
    let (service, method) = service_and_method(path);
    match service {
        "grpc.health.v1.Health"
        | "grpc.reflection.v1.ServerReflection"
        | "grpc.reflection.v1alpha.ServerReflection" => Access::Open,
        "weir.v1.WriteService"
        | "weir.v1.MonitorService"
        | "opentelemetry.proto.collector.metrics.v1.MetricsService"
        | "opentelemetry.proto.collector.logs.v1.LogsService"
        | "opentelemetry.proto.collector.trace.v1.TraceService" => Access::Scope(Scope::Write),
        "arrow.flight.protocol.FlightService" => match method {
            // The handshake trades a Basic credential for a bearer token;
            // DoPut writes (`write`) or binds parameters (`query`).
            "Handshake" | "DoPut" => Access::AnyToken,
            _ => Access::Scope(Scope::Query),
        },
        _ => Access::Scope(Scope::Admin),
    }
}

/// A gRPC method's path (`/package.Service/Method`) split in two; a path
/// without a method is all service.
pub fn service_and_method(path: &str) -> (&str, &str) {
    path.trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""))
}

/// The gRPC status for an authentication failure.
pub fn status(error: &AuthError) -> Status {
    crate::Error::Auth(error.clone()).grpc_status()
}

/// Checks a service's own scope rule against the principal the layer put
/// in the request's extensions (none: the layer did not run; refused).
pub fn require(principal: Option<&Principal>, scope: Scope) -> Result<(), Status> {
    let principal =
        principal.ok_or_else(|| Status::permission_denied("the request was not authenticated"))?;
    principal.require(scope).map_err(|e| status(&e))
}

#[derive(Clone)]
pub struct AuthLayer(pub Arc<Authenticator>);

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            auth: Arc::clone(&self.0),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    auth: Arc<Authenticator>,
    inner: S,
}

impl<S, B> tower_service::Service<http::Request<B>> for AuthService<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = Arc::clone(&self.auth);
        Box::pin(async move {
            let access = access(request.uri().path());
            if access == Access::Open {
                return inner.call(request).await;
            }
            let token = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(token_from_authorization);
            let peer = peer_ip(request.extensions());
            let checked = auth
                .authenticate(token.as_deref(), peer)
                .await
                .and_then(|principal| match access {
                    Access::Scope(scope) => principal.require(scope).map(|()| principal),
                    _ => Ok(principal),
                });
            match checked {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(e) => Ok(status(&e).into_http()),
            }
        })
    }
}

fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(|info| info.remote_addr)
        .map(|addr| addr.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_method_has_the_access_it_needs() {
        for (path, want) in [
            ("/grpc.health.v1.Health/Check", Access::Open),
            (
                "/weir.v1.WriteService/WriteStream",
                Access::Scope(Scope::Write),
            ),
            (
                "/weir.v1.MonitorService/Heartbeat",
                Access::Scope(Scope::Write),
            ),
            (
                "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                Access::Scope(Scope::Write),
            ),
            (
                "/arrow.flight.protocol.FlightService/DoGet",
                Access::Scope(Scope::Query),
            ),
            (
                "/arrow.flight.protocol.FlightService/DoPut",
                Access::AnyToken,
            ),
            (
                "/arrow.flight.protocol.FlightService/Handshake",
                Access::AnyToken,
            ),
            ("/weir.v1.SomethingNew/Call", Access::Scope(Scope::Admin)),
            ("garbage", Access::Scope(Scope::Admin)),
            ("", Access::Scope(Scope::Admin)),
        ] {
            assert_eq!(access(path), want, "{path}");
        }
    }
}
