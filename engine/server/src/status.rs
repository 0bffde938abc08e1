//! The one place where errors become wire status codes.

use axum::http::StatusCode;
use tonic::Code;

use crate::Error;

impl Error {
    pub fn grpc_code(&self) -> Code {
        match self {
            Error::Decode(_) | Error::InvalidWrite(_) => Code::InvalidArgument,
            Error::Storage(e) => match e {
                weir_storage::Error::InvalidWrite(_) | weir_storage::Error::TableTooWide { .. } => {
                    Code::InvalidArgument
                }
                weir_storage::Error::WalFailed(_) | weir_storage::Error::WalClosed => {
                    Code::Unavailable
                }
                _ => Code::Internal,
            },
            Error::Pipeline(e) => match e {
                weir_pipeline::Error::Rejected { .. } => Code::InvalidArgument,
                weir_pipeline::Error::UnknownSource(_) => Code::NotFound,
                // The plugin failed, not the engine: retrying the same input
                // will fail the same way until the plugin is fixed.
                weir_pipeline::Error::Failed { .. }
                | weir_pipeline::Error::Load(_)
                | weir_pipeline::Error::Config(_) => Code::FailedPrecondition,
                weir_pipeline::Error::ShutDown => Code::Unavailable,
                weir_pipeline::Error::Store(_) | weir_pipeline::Error::Internal(_) => {
                    Code::Internal
                }
            },
            Error::Query(e) => match e {
                weir_query::Error::InvalidQuery(_)
                | weir_query::Error::NotReadOnly(_)
                | weir_query::Error::TooDeep { .. }
                | weir_query::Error::DataError(_) => Code::InvalidArgument,
                weir_query::Error::MemoryLimit { .. }
                | weir_query::Error::TooLarge { .. }
                | weir_query::Error::ResultTooLarge { .. }
                | weir_query::Error::TooManyRows { .. } => Code::ResourceExhausted,
                weir_query::Error::Timeout { .. } => Code::DeadlineExceeded,
                _ => Code::Internal,
            },
            Error::Monitor(e) => match e {
                weir_monitor::Error::Config { .. } | weir_monitor::Error::Model(_) => {
                    Code::InvalidArgument
                }
                weir_monitor::Error::NotFound { .. } => Code::NotFound,
                weir_monitor::Error::Refused(_) => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            Error::Config(_) => Code::FailedPrecondition,
            Error::Io { .. } | Error::Encode { .. } | Error::Internal(_) => Code::Internal,
        }
    }

    pub fn grpc_status(&self) -> tonic::Status {
        tonic::Status::new(self.grpc_code(), self.to_string())
    }

    pub fn http_status(&self) -> StatusCode {
        match self {
            Error::Query(weir_query::Error::MemoryLimit { .. }) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Query(weir_query::Error::Timeout { .. }) => StatusCode::REQUEST_TIMEOUT,
            _ => match self.grpc_code() {
                Code::InvalidArgument => StatusCode::BAD_REQUEST,
                Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                Code::ResourceExhausted => StatusCode::PAYLOAD_TOO_LARGE,
                Code::NotFound => StatusCode::NOT_FOUND,
                Code::FailedPrecondition => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}
