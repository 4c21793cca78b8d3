//! `GET /metrics`: Prometheus text exposition, on the main port, no auth.

use axum::http::header;
use axum::response::IntoResponse;

/// Prometheus metrics (text format 0.0.4). No API key: it holds counts,
/// durations and route templates only, never tenant names or values.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
