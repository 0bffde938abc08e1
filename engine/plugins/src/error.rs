use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong loading or calling a plugin. Variants name
/// the plugin (or file) and the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("starting the plugin runtime: {0}")]
    Runtime(String),

    #[error("reading plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{path} is not a WebAssembly component Weir can compile: {message}")]
    Compile { path: PathBuf, message: String },

    #[error("plugin {path} refused: {reason}")]
    Refused { path: PathBuf, reason: String },

    #[error("plugin {plugin:?} is a {actual}, but its stage needs a {expected}")]
    WrongKind {
        plugin: String,
        expected: crate::PluginKind,
        actual: crate::PluginKind,
    },

    #[error("plugin {plugin:?} failed to initialize: {message}")]
    Init { plugin: String, message: String },

    /// The plugin ran and returned an error: usually it is saying what is
    /// wrong with its input.
    #[error("plugin {plugin:?} rejected the batch: {message}")]
    Rejected { plugin: String, message: String },

    #[error("plugin {plugin:?} trapped: {message}")]
    Trapped { plugin: String, message: String },

    #[error("plugin {plugin:?} ran past its deadline of {timeout:?}")]
    Timeout { plugin: String, timeout: Duration },

    #[error("plugin {plugin:?} hit its memory limit of {limit} bytes")]
    MemoryLimit { plugin: String, limit: usize },

    #[error("plugin {plugin:?} returned {bytes} bytes, over its output limit of {limit}")]
    OutputLimit {
        plugin: String,
        bytes: usize,
        limit: usize,
    },

    #[error("plugin {plugin:?} returned invalid output: {message}")]
    BadOutput { plugin: String, message: String },

    #[error("plugin {plugin:?} got a batch it cannot take: {message}")]
    BadInput { plugin: String, message: String },
}

impl Error {
    /// A fault of the plugin (trap, deadline, limit) rather than an answer
    /// from it: its instance is discarded and made anew.
    pub fn is_fault(&self) -> bool {
        matches!(
            self,
            Error::Trapped { .. }
                | Error::Timeout { .. }
                | Error::MemoryLimit { .. }
                | Error::OutputLimit { .. }
                | Error::Init { .. }
        )
    }

    /// A short name for the failure, for counters and the dead-letter table.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Runtime(_) => "runtime",
            Error::Read { .. } => "read",
            Error::Compile { .. } => "compile",
            Error::Refused { .. } => "refused",
            Error::WrongKind { .. } => "wrong_kind",
            Error::Init { .. } => "init",
            Error::Rejected { .. } => "rejected",
            Error::Trapped { .. } => "trap",
            Error::Timeout { .. } => "timeout",
            Error::MemoryLimit { .. } => "memory_limit",
            Error::OutputLimit { .. } => "output_limit",
            Error::BadOutput { .. } => "bad_output",
            Error::BadInput { .. } => "bad_input",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
