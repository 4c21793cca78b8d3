//! `/api/tunnels`: dedicated Cloudflare tunnels for customers' devices
//! (`crate::exposure::tunnels`): made (compensated when a step fails),
//! read with their live connections, their token, deleted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::extract::{ApiJson, TunnelPath};
use super::routes::audited;
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::exposure::names::{Hostname, Origins, TunnelName, origin_url};
use crate::exposure::tunnels::NewTunnel;
use crate::model::MessageResponse;
use crate::model::exposure::{TunnelCreateRequest, TunnelCreated, TunnelStatus, TunnelToken};

/// Make a tunnel routing `hostname` to `service_url`, its configuration
/// and (with a zone) its CNAME. Nothing is left behind when a step fails.
#[utoipa::path(post, path = "/api/tunnels", tag = "tunnels", request_body = TunnelCreateRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Made; `tunnel_token` is a secret", body = TunnelCreated),
        (status = 400, description = "Invalid input, or no Cloudflare token and account", body = ErrorBody),
        (status = 409, description = "A tunnel with this name exists", body = ErrorBody),
        (status = 502, description = "Cloudflare refused", body = ErrorBody),
        (status = 503, description = "Cloudflare is unavailable", body = ErrorBody),
    ))]
pub async fn create_tunnel(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<TunnelCreateRequest>,
) -> Result<(StatusCode, Json<TunnelCreated>), ApiError> {
    let tunnels = state.exposure.tunnels()?;
    let new = NewTunnel {
        name: TunnelName::parse(&request.name)?,
        hostname: Hostname::parse(&request.hostname)?,
        service_url: origin_url(&request.service_url, Origins::Tunnel)?,
    };
    let target = new.hostname.as_str().to_owned();
    let created = audited(&key, "create_tunnel", &target, tunnels.create(new).await)?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// The tunnel and its live connections (a connection pending reconnect is
/// left out: an empty list means not connected).
#[utoipa::path(get, path = "/api/tunnels/{tunnel_id}", tag = "tunnels",
    params(("tunnel_id" = String, Path, description = "The tunnel's id (a UUID)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The tunnel", body = TunnelStatus),
        (status = 404, description = "No such tunnel", body = ErrorBody),
    ))]
pub async fn tunnel_status(
    State(state): State<AppState>,
    TunnelPath(id): TunnelPath,
) -> Result<Json<TunnelStatus>, ApiError> {
    let tunnels = state.exposure.tunnels()?;
    Ok(Json(tunnels.status(&id).await?))
}

/// The token `cloudflared tunnel run --token` takes. A secret.
#[utoipa::path(get, path = "/api/tunnels/{tunnel_id}/token", tag = "tunnels",
    params(("tunnel_id" = String, Path, description = "The tunnel's id (a UUID)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The token", body = TunnelToken),
        (status = 404, description = "No such tunnel", body = ErrorBody),
    ))]
pub async fn tunnel_token(
    State(state): State<AppState>,
    TunnelPath(id): TunnelPath,
) -> Result<Json<TunnelToken>, ApiError> {
    let tunnels = state.exposure.tunnels()?;
    Ok(Json(tunnels.token(&id).await?))
}

/// Delete the tunnel's CNAMEs and the tunnel (with its connections); a
/// tunnel already gone is fine.
#[utoipa::path(delete, path = "/api/tunnels/{tunnel_id}", tag = "tunnels",
    params(("tunnel_id" = String, Path, description = "The tunnel's id (a UUID)")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Deleted", body = MessageResponse),
        (status = 503, description = "Cloudflare is unavailable", body = ErrorBody),
    ))]
pub async fn delete_tunnel(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    TunnelPath(id): TunnelPath,
) -> Result<Json<MessageResponse>, ApiError> {
    let tunnels = state.exposure.tunnels()?;
    audited(
        &key,
        "delete_tunnel",
        id.as_str(),
        tunnels.delete(&id).await,
    )?;
    Ok(Json(MessageResponse {
        message: format!("Tunnel {id} deleted successfully"),
    }))
}
