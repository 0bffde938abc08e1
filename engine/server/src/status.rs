//! The one place where errors become wire status codes. Every error has a
//! protocol-neutral [`ErrorKind`]; each wire convention (gRPC codes, HTTP
//! statuses, InfluxDB's error codes) is a function of the kind alone.

use axum::http::StatusCode;
use tonic::Code;

use crate::Error;
use crate::auth::AuthError;

/// What went wrong, in terms every protocol can answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong: resending it unchanged fails again.
    InvalidInput,
    /// The request is bigger than a limit allows.
    TooLarge,
    NotFound,
    /// No valid credential.
    Unauthenticated,
    /// A valid credential without the permission needed.
    PermissionDenied,
    /// Too many failed authentications from this peer for now.
    TooManyFailures,
    /// The server is not set up to do this (a plugin fails, a config is
    /// wrong): resending fails until the operator fixes it.
    Precondition,
    Timeout,
    /// Try again later: shutting down, or storage is failing.
    Unavailable,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind as K;
        match self {
            Error::Decode(_) | Error::InvalidWrite(_) => K::InvalidInput,
            Error::Storage(e) => match e {
                weir_storage::Error::InvalidWrite(_)
                | weir_storage::Error::TableTooWide { .. }
                | weir_storage::Error::Rollup { .. }
                | weir_storage::Error::RollupTable { .. } => K::InvalidInput,
                weir_storage::Error::WalFailed(_) | weir_storage::Error::WalClosed => {
                    K::Unavailable
                }
                _ => K::Internal,
            },
            Error::Pipeline(e) => match e {
                weir_pipeline::Error::Decode(weir_protocols::Error::TooLarge { .. }) => K::TooLarge,
                weir_pipeline::Error::Decode(_) | weir_pipeline::Error::Rejected { .. } => {
                    K::InvalidInput
                }
                weir_pipeline::Error::UnknownSource(_) => K::NotFound,
                // The plugin failed, not the engine: retrying the same input
                // will fail the same way until the plugin is fixed.
                weir_pipeline::Error::Failed { .. }
                | weir_pipeline::Error::Load(_)
                | weir_pipeline::Error::Config(_) => K::Precondition,
                weir_pipeline::Error::ShutDown => K::Unavailable,
                weir_pipeline::Error::Store(_) | weir_pipeline::Error::Internal(_) => K::Internal,
            },
            Error::Query(e) => match e {
                weir_query::Error::InvalidQuery(_)
                | weir_query::Error::NotReadOnly(_)
                | weir_query::Error::TooDeep { .. }
                | weir_query::Error::DataError(_) => K::InvalidInput,
                weir_query::Error::MemoryLimit { .. }
                | weir_query::Error::TooLarge { .. }
                | weir_query::Error::ResultTooLarge { .. }
                | weir_query::Error::TooManyRows { .. } => K::TooLarge,
                weir_query::Error::Timeout { .. } => K::Timeout,
                _ => K::Internal,
            },
            Error::Monitor(e) => match e {
                weir_monitor::Error::Config { .. } | weir_monitor::Error::Model(_) => {
                    K::InvalidInput
                }
                weir_monitor::Error::NotFound { .. } => K::NotFound,
                weir_monitor::Error::Refused(_) => K::Precondition,
                _ => K::Internal,
            },
            Error::Auth(e) => match e {
                AuthError::Missing | AuthError::Invalid => K::Unauthenticated,
                AuthError::Forbidden { .. } => K::PermissionDenied,
                AuthError::TooManyFailures { .. } => K::TooManyFailures,
            },
            Error::Config(_) => K::Precondition,
            Error::Io { .. } | Error::Encode { .. } | Error::Internal(_) => K::Internal,
        }
    }

    pub fn grpc_code(&self) -> Code {
        self.kind().grpc_code()
    }

    pub fn grpc_status(&self) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), self.to_string())
    }

    pub fn http_status(&self) -> StatusCode {
        self.kind().http_status()
    }

    /// The Postgres SQLSTATE for this error, as psql and drivers show it.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Error::Query(e) => match e {
                weir_query::Error::InvalidQuery(_) => "42000",
                weir_query::Error::NotReadOnly(_) => "25006",
                weir_query::Error::DataError(_) => "22000",
                weir_query::Error::MemoryLimit { .. } => "53200",
                weir_query::Error::TooDeep { .. } => "54001",
                weir_query::Error::TooLarge { .. }
                | weir_query::Error::ResultTooLarge { .. }
                | weir_query::Error::TooManyRows { .. } => "54000",
                weir_query::Error::Timeout { .. } => "57014",
                _ => "XX000",
            },
            _ => match self.kind() {
                ErrorKind::InvalidInput => "22000",
                ErrorKind::TooLarge => "54000",
                ErrorKind::NotFound => "42704",
                ErrorKind::Unauthenticated => "28P01",
                ErrorKind::PermissionDenied => "42501",
                ErrorKind::TooManyFailures => "28000",
                ErrorKind::Precondition => "55000",
                ErrorKind::Timeout => "57014",
                ErrorKind::Unavailable => "57P03",
                ErrorKind::Internal => "XX000",
            },
        }
    }
}

impl ErrorKind {
    pub fn grpc_code(self) -> Code {
        match self {
            ErrorKind::InvalidInput => Code::InvalidArgument,
            ErrorKind::TooLarge => Code::ResourceExhausted,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::TooManyFailures => Code::ResourceExhausted,
            ErrorKind::Precondition => Code::FailedPrecondition,
            ErrorKind::Timeout => Code::DeadlineExceeded,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Internal => Code::Internal,
        }
    }

    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::TooManyFailures => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Precondition => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// InfluxDB 2's `code` for this kind, as its clients expect in
    /// `{"code": …, "message": …}`.
    pub fn influx_code(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid",
            ErrorKind::TooLarge => "request too large",
            ErrorKind::NotFound => "not found",
            ErrorKind::Unauthenticated => "unauthorized",
            ErrorKind::PermissionDenied => "forbidden",
            ErrorKind::TooManyFailures => "too many requests",
            ErrorKind::Precondition => "unprocessable entity",
            ErrorKind::Timeout => "request timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal error",
        }
    }
}
