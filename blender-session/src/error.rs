use std::io;
use std::path::PathBuf;

/// Errors of this crate outside the MCP client (which has its own [`mcp::Error`](crate::mcp::Error)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing an embedded asset to disk failed.
    #[error("failed to write pod asset {path}")]
    WriteAsset {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A pod-side script's output holds no readable report line.
    #[error(
        "the pod-side script printed no readable report (a JSON line starting with \
         {{\"rpb_session\" or {{\"rpb_setup\"); check its stderr and the logs under the pod root"
    )]
    ParseReport {
        /// The parser's error, when a report line was found but did not parse.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// An MCP client error.
    #[error(transparent)]
    Mcp(#[from] crate::mcp::Error),
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
