//! `/api/releases/{namespace}/{name}/sidecar`: attach (or replace) and take
//! off the release's MCP sidecar. It becomes part of the release, applied on
//! every later upgrade and rollback (`crate::releases`); the request is checked here, before any I/O.

use axum::extract::State;
use axum::{Extension, Json};

use super::extract::{ApiJson, ReleasePath};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::model::MessageResponse;
use crate::model::apps::{SidecarRequest, SidecarResponse};
use crate::releases::AttachSidecar;

/// Attach a sidecar container to a Deployment of the release, with a
/// Service `{release}-mcp` for its first port. The same request again
/// changes nothing; another replaces it.
#[utoipa::path(post, path = "/api/releases/{namespace}/{name}/sidecar", tag = "releases", request_body = SidecarRequest,
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Attached (or already so)", body = SidecarResponse),
        (status = 400, description = "Invalid sidecar, or the Deployment is not in the release", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn attach_sidecar(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
    ApiJson(request): ApiJson<SidecarRequest>,
) -> Result<Json<SidecarResponse>, ApiError> {
    let attach = AttachSidecar::parse(request, &name)?;
    let attached = state
        .releases
        .attach_sidecar(&key, &namespace, &name, attach)
        .await?;
    let internal = attached.service.as_ref().map(|service| {
        format!(
            "http://{}.{namespace}.svc.cluster.local:{}",
            service.name, service.port
        )
    });
    Ok(Json(SidecarResponse {
        message: format!(
            "Sidecar {} attached to deployment {}",
            attached.container, attached.deployment
        ),
        deployment: attached.deployment,
        namespace: namespace.to_string(),
        container_name: attached.container,
        mcp_service_name: attached.service.map(|service| service.name),
        mcp_internal_url: internal,
        mcp_endpoint_url: attached.endpoint,
        revision: attached.revision,
    }))
}

/// Take the sidecar off the release (a new revision without it).
#[utoipa::path(delete, path = "/api/releases/{namespace}/{name}/sidecar", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Removed", body = MessageResponse),
        (status = 404, description = "No such release, or it has no sidecar", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn detach_sidecar(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
) -> Result<Json<MessageResponse>, ApiError> {
    let revision = state
        .releases
        .detach_sidecar(&key, &namespace, &name)
        .await?;
    Ok(Json(MessageResponse {
        message: format!("Sidecar removed from {namespace}/{name} (now revision {revision})"),
    }))
}
