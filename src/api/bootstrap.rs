//! `/api/releases/{namespace}/{name}/init/n8n`: n8n's first-run bootstrap
//! (owner account, API key kept in the release), over HTTP through its
//! Service (`crate::releases`).

use axum::extract::State;
use axum::{Extension, Json};

use super::extract::{ApiJson, ReleasePath};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::model::apps::{N8nInitRequest, N8nInitResponse};
use crate::releases::n8n_bootstrap::N8nBootstrap;

/// Bootstrap n8n: wait until it answers, set up the owner when n8n asks
/// for one, log in, make an API key and keep it in the release's Secret
/// (its pods restart once to read it). A failed step is a 200 with
/// `success: false` and `error: "[step] …"`. Overlapping calls wait for the
/// running one and get its result; a later call gets the kept key.
#[utoipa::path(post, path = "/api/releases/{namespace}/{name}/init/n8n", tag = "releases", request_body = N8nInitRequest,
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The bootstrap's outcome (see `success`)", body = N8nInitResponse),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Another operation held the release too long", body = ErrorBody),
    ))]
pub async fn init_n8n(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
    ApiJson(request): ApiJson<N8nInitRequest>,
) -> Result<Json<N8nInitResponse>, ApiError> {
    let answer = state
        .releases
        .init_n8n(&key, &namespace, &name, N8nBootstrap::from(request))
        .await?;
    Ok(Json(answer))
}
