//! Liveness (`/health`, the contract's shape) and readiness (`/ready`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::model::HealthResponse;

/// Process up. Never fails; `degraded` when the Kubernetes API is unreachable.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The service runs", body = HealthResponse)))]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    let status = if state.probe.reachable() {
        "healthy"
    } else {
        "degraded"
    };
    Json(HealthResponse {
        status: status.to_owned(),
        timestamp: jiff::Timestamp::now().to_string(),
        helm_version: state.helm.version().text.clone(),
    })
}

/// Ready to serve: the Kubernetes API answers and helm runs.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready, with the reason", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.probe.reachable() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        ApiError::unavailable(
            "kubernetes_unavailable",
            "The Kubernetes API is unreachable",
            5,
        )
        .into_response()
    }
}
