//! Why a chart could not be handed to helm, and how clients hear of it: a
//! fixed sentence per kind; URLs, hosts and registry answers stay in the
//! log.

use super::archive::Refusal;
use super::http::FetchError;
use crate::error::{ApiError, Code};

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

impl From<ChartError> for ApiError {
    fn from(error: ChartError) -> Self {
        tracing::warn!(%error, "chart not handed to helm");
        match error {
            ChartError::NotFound(_) => ApiError::new(
                Code::ChartNotFound,
                "The chart (or the requested version) was not found at its source",
            ),
            ChartError::NotAllowed(_) => ApiError::new(
                Code::ChartSourceNotAllowed,
                "The chart's download would reach a host that is not an allowed chart source",
            ),
            ChartError::Unreachable(_) => ApiError::new(
                Code::ChartSourceUnreachable,
                "The chart source could not be reached, or its answer could not be used",
            ),
            ChartError::TimedOut(seconds) => ApiError::new(
                Code::ChartSourceUnreachable,
                format!("The chart source did not deliver the chart within {seconds} s"),
            ),
            ChartError::TooLarge(bytes) => ApiError::new(
                Code::ChartArchiveRefused,
                format!(
                    "The chart is refused: its archive is larger than {} MiB",
                    bytes >> 20
                ),
            ),
            ChartError::Refused(refusal @ Refusal::Archive(_)) => ApiError::new(
                Code::ChartArchiveRefused,
                format!("The chart is refused: {refusal}"),
            ),
            ChartError::Refused(refusal @ Refusal::Schema { .. }) => ApiError::new(
                Code::ChartSchemaRefused,
                format!(
                    "The chart is refused: {refusal}. helm would fetch or read what it names \
                     while validating values; only local references (#...) and the standard \
                     meta-schemas are accepted"
                ),
            ),
            ChartError::Cache(_) => ApiError::new(
                Code::ChartCacheUnavailable,
                "The chart could not be stored for helm",
            ),
        }
    }
}
