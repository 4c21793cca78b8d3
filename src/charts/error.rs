//! Why a chart could not be handed to helm. How clients hear of it (a
//! fixed sentence per kind; URLs, hosts and registry answers stay in the
//! log) is decided in `crate::error`.

use super::archive::Refusal;
use super::http::FetchError;

/// A failed chart fetch.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No such chart, version or tag (or the source wants credentials).
    #[error("chart not found: {0}")]
    NotFound(String),
    /// A download would reach a host that is not an allowed chart source.
    #[error("{0}")]
    NotAllowed(FetchError),
    /// The source could not be reached, failed, or answered something the
    /// operator does not read (too large, unparsable, a wrong digest).
    #[error("{0}")]
    Unreachable(String),
    /// The whole fetch took longer than CHART_FETCH_TIMEOUT.
    #[error("the chart fetch took longer than {0} s")]
    TimedOut(u64),
    /// The chart archive is larger than the operator downloads.
    #[error("the chart archive is larger than {0} bytes")]
    TooLarge(u64),
    /// The archive, or one of its values schemas, is refused.
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The cache directory failed.
    #[error("chart cache: {0}")]
    Cache(#[from] std::io::Error),
}

impl From<FetchError> for ChartError {
    fn from(error: FetchError) -> Self {
        use reqwest::StatusCode;
        match error {
            FetchError::NotAllowed(_) => Self::NotAllowed(error),
            FetchError::Status {
                status:
                    StatusCode::NOT_FOUND
                    | StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::GONE,
                ..
            } => Self::NotFound(error.to_string()),
            FetchError::Local(source) => Self::Cache(source),
            other => Self::Unreachable(other.to_string()),
        }
    }
}
