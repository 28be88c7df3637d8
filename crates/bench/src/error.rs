//! What can stop `quorumkv-bench`: bad flags, a failed worker, or a run in which
//! every request failed. Failed requests themselves are counted, not raised.

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    InvalidArgs(String),
    #[error("bad endpoint {url:?}: {reason}")]
    BadEndpoint { url: String, reason: String },
    #[error("every one of the {0} measured requests failed")]
    AllFailed(u64),
    #[error("no request completed in the measured window")]
    NothingMeasured,
    #[error("histogram: {0}")]
    Histogram(String),
    #[error("a load worker died: {0}")]
    Worker(String),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
    #[error("encoding the JSON report: {0}")]
    Json(#[from] serde_json::Error),
}
