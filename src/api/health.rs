//! Liveness (`/health`, the contract's shape) and readiness (`/ready`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::state::AppState;
use crate::error::{ApiError, Code, ErrorBody};
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
        helm_version: state.releases.helm_version().to_owned(),
    })
}

/// Ready to serve: the Kubernetes API answers (background probe), helm
/// is runnable (its version was detected at start and the binary is still
/// there and executable) and the cluster-wide read cache has listed
/// everything once (for at most `READ_CACHE_READY_WAIT` after start), so a
/// restarted replica takes traffic when it answers reads from memory.
/// Cheap: no helm process per probe.
#[utoipa::path(get, path = "/ready", tag = "health",
    responses((status = 200, description = "Ready"), (status = 503, description = "Not ready; `detail` lists every reason", body = ErrorBody)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    if !state.probe.reachable() {
        reasons.push("the Kubernetes API is unreachable");
    }
    if !state.releases.helm_runnable().await {
        reasons.push("the helm binary cannot be run");
    }
    if state.releases.cache_warming() {
        reasons.push("the read cache is still listing the cluster");
    }
    if reasons.is_empty() {
        let body =
            serde_json::json!({"status": "ready", "helm_version": state.releases.helm_version()});
        return (StatusCode::OK, Json(body)).into_response();
    }
    ApiError::new(Code::NotReady, format!("Not ready: {}", reasons.join("; "))).into_response()
}
