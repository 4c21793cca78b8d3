//! `/api/releases`: install, get, upgrade, uninstall, roll back, list
//! revisions and report pods of a Helm release. Each handler parses the
//! request into a validated command, calls the release service
//! (`crate::releases`) and shapes its answer; reads say where they were
//! answered from in `X-Served-From`.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponseParts, ResponseParts};
use axum::{Extension, Json};

use super::extract::{ApiJson, ReleasePath};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, Code, ErrorBody};
use crate::exposure::names::Subdomain;
use crate::model::exposure::UninstallQuery;
use crate::model::{
    InstallRequest, MessageResponse, ReleaseInfo, ReleaseStatusResponse, RevisionList,
    RollbackRequest, UpgradeRequest,
};
use crate::releases::read::ServedFrom;
use crate::releases::{Install, Upgrade, wire};

/// Install a chart as a new release.
#[utoipa::path(post, path = "/api/releases", tag = "releases", request_body = InstallRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Installed", body = ReleaseInfo),
        (status = 400, description = "Invalid input, unknown chart, or chart failed to render", body = ErrorBody),
        (status = 403, description = "The namespace exists and is not managed by this operator", body = ErrorBody),
        (status = 404, description = "The namespace does not exist (send create_namespace: true)", body = ErrorBody),
        (status = 409, description = "Name in use, or another operation runs on it", body = ErrorBody),
    ))]
pub async fn install_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<InstallRequest>,
) -> Result<(StatusCode, Json<ReleaseInfo>), ApiError> {
    let install = Install::parse(request, state.namespace_prefix(), &state.chart_policy)?;
    let installed = state.releases.install(&key, install).await?;
    let mut info = wire::release_info_with_values(&installed.release);
    info.route = installed.route;
    Ok((StatusCode::CREATED, Json(info)))
}

/// The release at its latest revision, whatever its status.
#[utoipa::path(get, path = "/api/releases/{namespace}/{name}", tag = "releases",
    params(("namespace" = String, Path, description = "Tenant namespace"), ("name" = String, Path, description = "Release name")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The release", body = ReleaseInfo, headers(("x-served-from" = String, description = "`cache` (the watch-fed index) or `api` (read from the Kubernetes API)"))),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
pub async fn get_release(
    State(state): State<AppState>,
    ReleasePath { namespace, name }: ReleasePath,
) -> Result<(Served, Json<ReleaseInfo>), ApiError> {
    // While the API server does not answer, no answer from memory that
    // may be stale, and no call that would wait for it: 503 at once.
    state.probe.require()?;
    let (from, latest) = state.releases.latest(&namespace, &name).await?;
    let info = state
        .releases
        .with_route(wire::release_info(&latest.summary))
        .await;
    Ok((Served(from), Json(info)))
}

/// Upgrade a release (new chart version and/or values).
#[utoipa::path(patch, path = "/api/releases/{namespace}/{name}", tag = "releases", request_body = UpgradeRequest,
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Upgraded", body = ReleaseInfo),
        (status = 400, description = "Invalid input or chart missing", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn upgrade_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
    ApiJson(request): ApiJson<UpgradeRequest>,
) -> Result<Json<ReleaseInfo>, ApiError> {
    let upgrade = Upgrade::parse(request, &state.chart_policy)?;
    let release = state
        .releases
        .upgrade(&key, &namespace, &name, upgrade)
        .await?;
    Ok(Json(
        state
            .releases
            .with_route(wire::release_info_with_values(&release))
            .await,
    ))
}

/// Uninstall a release. Its routes (`{subdomain}-mcp` included) are
/// removed with it, also when it was already gone (then 404); so are the
/// routes the earlier operator made for it into the release's namespace (at
/// `?subdomain=`, else at its default name `{release}-{namespace suffix}`,
/// and its MCP route), and its `{release}-mcp` Service.
#[utoipa::path(delete, path = "/api/releases/{namespace}/{name}", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path), UninstallQuery),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Uninstalled", body = MessageResponse),
        (status = 404, description = "No such release (already gone)", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn uninstall_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
    query: Result<Query<UninstallQuery>, QueryRejection>,
) -> Result<Json<MessageResponse>, ApiError> {
    // Every recorded route of the release goes with it; `subdomain` also
    // names one the earlier operator made (no record) to remove.
    let Query(query) = query
        .map_err(|_| ApiError::new(Code::InvalidPath, "The query is not ?subdomain=<subdomain>"))?;
    let subdomain = query
        .subdomain
        .as_deref()
        .map(Subdomain::parse)
        .transpose()?;
    state
        .releases
        .uninstall(&key, &namespace, &name, subdomain.as_ref())
        .await?;
    Ok(Json(MessageResponse {
        message: format!("Release {name} uninstalled from {namespace}"),
    }))
}

/// Roll a release back to an earlier revision (0 or null: the previous one).
#[utoipa::path(post, path = "/api/releases/{namespace}/{name}/rollback", tag = "releases", request_body = RollbackRequest,
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Rolled back", body = MessageResponse),
        (status = 404, description = "No such release or revision", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn rollback_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ReleasePath { namespace, name }: ReleasePath,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    let (target, release) = state
        .releases
        .rollback(&key, &namespace, &name, request.revision)
        .await?;
    Ok(Json(MessageResponse {
        message: format!(
            "Release {name} rolled back to revision {target} (now revision {})",
            release.version
        ),
    }))
}

/// The revisions of a release, oldest first.
#[utoipa::path(get, path = "/api/releases/{namespace}/{name}/revisions", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The history", body = RevisionList, headers(("x-served-from" = String, description = "`cache` or `api`"))),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
pub async fn list_revisions(
    State(state): State<AppState>,
    ReleasePath { namespace, name }: ReleasePath,
) -> Result<(Served, Json<RevisionList>), ApiError> {
    // While the API server does not answer, no answer from memory that
    // may be stale, and no call that would wait for it: 503 at once.
    state.probe.require()?;
    let (from, revisions) = state.releases.revisions(&namespace, &name).await?;
    Ok((Served(from), Json(RevisionList { revisions })))
}

/// The release and its pods. When pods cannot be read the answer is 503,
/// never an empty list that looks healthy.
#[utoipa::path(get, path = "/api/releases/{namespace}/{name}/status", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Release and pods", body = ReleaseStatusResponse, headers(("x-served-from" = String, description = "`cache` or `api`"))),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 503, description = "Pods could not be read", body = ErrorBody),
    ))]
pub async fn release_status(
    State(state): State<AppState>,
    ReleasePath { namespace, name }: ReleasePath,
) -> Result<(Served, Json<ReleaseStatusResponse>), ApiError> {
    // While the API server does not answer, no answer from memory that
    // may be stale, and no call that would wait for it: 503 at once.
    state.probe.require()?;
    let (from, status) = state.releases.status(&namespace, &name).await?;
    Ok((
        Served(from),
        Json(ReleaseStatusResponse {
            release: state
                .releases
                .with_route(wire::release_info(&status.release.summary))
                .await,
            pods: status.pods,
            pod_retrieval_error: None,
            stuck: status.stuck,
        }),
    ))
}

/// The header naming a read's source.
pub const SERVED_FROM: HeaderName = HeaderName::from_static("x-served-from");

/// `X-Served-From: cache` or `api` on every read, so tests and benchmarks
/// can tell the two paths apart.
pub struct Served(pub ServedFrom);

impl IntoResponseParts for Served {
    type Error = Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Infallible> {
        parts
            .headers_mut()
            .insert(SERVED_FROM, HeaderValue::from_static(self.0.as_str()));
        Ok(parts)
    }
}
