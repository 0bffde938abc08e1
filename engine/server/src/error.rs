/// Everything that can go wrong serving a request or starting up. How each
/// becomes a gRPC status or HTTP status is decided in `status.rs`, only there.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed at the wire level (symbols, indexes).
    #[error("invalid request: {0}")]
    Decode(String),

    #[error(transparent)]
    InvalidWrite(#[from] weir_model::Error),

    #[error(transparent)]
    Storage(#[from] weir_storage::Error),

    #[error(transparent)]
    Pipeline(weir_pipeline::Error),

    #[error(transparent)]
    Query(#[from] weir_query::Error),

    #[error(transparent)]
    Monitor(weir_monitor::Error),

    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),

    #[error("configuration: {0}")]
    Config(String),

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error("encoding the result as {format}: {message}")]
    Encode {
        format: &'static str,
        message: String,
    },

    #[error("internal error: {0}")]
    Internal(String),
}

impl From<weir_pipeline::Error> for Error {
    /// A store error met on the write path is a store error, whoever met it.
    fn from(e: weir_pipeline::Error) -> Self {
        match e {
            weir_pipeline::Error::Store(e) => Error::Storage(e),
            e => Error::Pipeline(e),
        }
    }
}

impl From<weir_monitor::Error> for Error {
    /// Query and write errors met by the monitor keep their own status.
    fn from(e: weir_monitor::Error) -> Self {
        match e {
            weir_monitor::Error::Query(e) => Error::Query(e),
            weir_monitor::Error::Write(e) => Error::from(e),
            e => Error::Monitor(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
