//! The one error type that reaches HTTP clients.
//!
//! Every layer has its own `thiserror` enum (`HelmError`, `StorageError`,
//! `KubeError`, `ValidationError`); each converts into [`ApiError`] with
//! `From`, which picks the status code and the contract's body
//! `{"detail": str, "error_type": str}`. Internal text (helm's stderr, API
//! server messages, paths) is logged where it happens and never copied into
//! `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response, as the platform's client expects it.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    /// Human readable; shown to people by the platform.
    pub detail: String,
    /// Short machine readable name, e.g. `release_not_found`.
    pub error_type: String,
}

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds a client should wait before retrying (sent as `Retry-After`).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, error_type: &str, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                detail: detail.into(),
                error_type: error_type.to_owned(),
            },
            retry_after: None,
        }
    }

    pub fn bad_request(error_type: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_type, detail)
    }

    pub fn forbidden(error_type: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, error_type, detail)
    }

    pub fn not_found(error_type: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error_type, detail)
    }

    pub fn conflict(error_type: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, error_type, detail)
    }

    pub fn unavailable(error_type: &str, detail: impl Into<String>, retry_after: u32) -> Self {
        let mut error = Self::new(StatusCode::SERVICE_UNAVAILABLE, error_type, detail);
        error.retry_after = Some(retry_after);
        error
    }

    pub fn internal(error_type: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, error_type, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid or missing API key",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.body.error_type,
            self.body.detail
        )
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_carries_retry_after() {
        let response = ApiError::unavailable("busy", "try later", 5).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn display_names_status_and_type() {
        let error = ApiError::not_found("release_not_found", "gone");
        assert_eq!(error.to_string(), "404 release_not_found: gone");
    }
}

mod conversions {
    //! How each layer's errors reach clients. The layer error is logged in
    //! full here; the client gets a fixed sentence.

    use axum::http::StatusCode;

    use super::ApiError;
    use crate::helm::{FailureKind, HelmError, StorageError};
    use crate::kube::KubeError;
    use crate::names::ValidationError;

    impl From<ValidationError> for ApiError {
        fn from(error: ValidationError) -> Self {
            ApiError::bad_request(error.error_type(), error.to_string())
        }
    }

    impl From<StorageError> for ApiError {
        fn from(error: StorageError) -> Self {
            match error {
                StorageError::Kube(source) => KubeError::Api {
                    action: "reading release records",
                    source,
                }
                .into(),
                StorageError::Corrupt { .. } | StorageError::TooLarge { .. } => {
                    tracing::error!(%error, "unreadable helm release record");
                    ApiError::internal(
                        "release_record_unreadable",
                        "The release record in the cluster cannot be read (corrupt or too large)",
                    )
                }
            }
        }
    }

    impl From<KubeError> for ApiError {
        fn from(error: KubeError) -> Self {
            if let KubeError::Api { source, .. } = &error {
                crate::metrics::kube_api_error(source);
            }
            match &error {
                KubeError::NotManaged(name) => ApiError::conflict(
                    "namespace_not_managed",
                    format!("Namespace {name} exists and is not managed by this operator"),
                ),
                KubeError::Terminating(name) => ApiError::conflict(
                    "namespace_terminating",
                    format!("Namespace {name} is being deleted; try again when it is gone"),
                ),
                KubeError::Api { action, source } if crate::kube::is_unreachable(source) => {
                    tracing::error!(%error, "kubernetes API unreachable");
                    ApiError::unavailable(
                        "kubernetes_unavailable",
                        format!("The Kubernetes API is unreachable ({action}); try again shortly"),
                        5,
                    )
                }
                KubeError::Api { action, source } => {
                    tracing::error!(%error, "kubernetes API error");
                    let code = match source {
                        kube::Error::Api(status) => status.code,
                        _ => 500,
                    };
                    match code {
                        409 => ApiError::conflict(
                            "kubernetes_conflict",
                            format!("Conflict while {action}; try again"),
                        ),
                        403 => ApiError::internal(
                            "operator_forbidden",
                            format!("The operator is not allowed {action}"),
                        ),
                        _ => ApiError::internal(
                            "kubernetes_error",
                            format!("The Kubernetes API failed {action}"),
                        ),
                    }
                }
            }
        }
    }

    impl From<HelmError> for ApiError {
        fn from(error: HelmError) -> Self {
            match error {
                HelmError::Storage(storage) => storage.into(),
                HelmError::Busy => ApiError::unavailable(
                    "operator_busy",
                    "Too many helm operations are running; try again shortly",
                    10,
                ),
                HelmError::Spawn { .. } => {
                    tracing::error!(%error, "helm could not be started");
                    ApiError::internal("helm_unavailable", "The helm binary could not be started")
                }
                HelmError::DeadlineExceeded { ref target, .. } => ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "helm_timeout",
                    format!(
                        "The helm operation on {target} did not finish in time and was stopped"
                    ),
                ),
                HelmError::Cancelled => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cancelled",
                    "The operation was cancelled",
                ),
                HelmError::Output { .. } => {
                    tracing::error!(%error, "unexpected helm output");
                    ApiError::internal("helm_output_unreadable", "helm's output could not be read")
                }
                HelmError::Failed {
                    operation,
                    ref target,
                    kind,
                } => failed(operation, target, kind),
                HelmError::NotConfined {
                    ref namespace,
                    ref violations,
                } => ApiError::bad_request(
                    "chart_not_confined",
                    crate::helm::confine::refusal(namespace, violations),
                ),
                HelmError::ConfineSetup(_) => {
                    tracing::error!(%error, "confinement check not prepared");
                    ApiError::internal(
                        "confinement_unavailable",
                        "The confinement check could not be prepared",
                    )
                }
            }
        }
    }

    fn failed(operation: &str, target: &str, kind: FailureKind) -> ApiError {
        match kind {
            FailureKind::NameInUse => {
                ApiError::conflict("release_exists", format!("Release {target} already exists"))
            }
            FailureKind::OperationInProgress => ApiError::conflict(
                "operation_in_progress",
                format!(
                    "Another operation is in progress on {target}; try again when it has finished"
                ),
            ),
            FailureKind::ReleaseNotFound => {
                ApiError::not_found("release_not_found", format!("Release {target} not found"))
            }
            FailureKind::RevisionNotFound => ApiError::not_found(
                "revision_not_found",
                format!("Release {target} has no such revision"),
            ),
            FailureKind::NoDeployedRelease => ApiError::conflict(
                "no_deployed_release",
                format!(
                    "Release {target} has no deployed revision to upgrade; roll back or reinstall it"
                ),
            ),
            FailureKind::ChartNotFound => ApiError::bad_request(
                "chart_not_found",
                "The chart (or the requested version) was not found at its source",
            ),
            FailureKind::ChartSourceUnreachable => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "chart_source_unreachable",
                "The chart source could not be reached",
            ),
            FailureKind::RenderFailed => ApiError::bad_request(
                "chart_render_failed",
                "The chart failed to render with the given values",
            ),
            FailureKind::ValuesInvalid => ApiError::bad_request(
                "invalid_values",
                "The values do not match the chart's values schema",
            ),
            FailureKind::RejectedByCluster => ApiError::bad_request(
                "rejected_by_cluster",
                "The cluster refused the chart's objects (quota, admission policy or permissions)",
            ),
            FailureKind::ClusterUnreachable => ApiError::unavailable(
                "kubernetes_unavailable",
                "The Kubernetes API is unreachable; try again shortly",
                5,
            ),
            FailureKind::TimedOut => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "helm_timeout",
                format!(
                    "The helm operation on {target} did not finish within its timeout; the release is marked failed"
                ),
            ),
            FailureKind::Other => ApiError::internal(
                "helm_failed",
                format!("helm {operation} failed for {target}"),
            ),
        }
    }
}
