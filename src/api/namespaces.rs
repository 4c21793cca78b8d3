//! `/api/namespaces`: tenant namespaces with their quota, defaults,
//! isolation and lifecycle (`crate::tenants`); deleting one uninstalls its
//! releases first (`crate::releases`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::extract::{ApiJson, NamespacePath};
use super::state::AppState;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::model::{MessageResponse, NamespaceInfo, NamespaceRequest};
use crate::names::{Quantity, TenantNamespace, object_count};
use crate::releases::audit::audit;
use crate::tenants::{Applied, ObjectCounts, TenantQuota};

/// Create a tenant namespace with a resource quota, or update its quota.
/// Object counts not sent take the operator's defaults (`QUOTA_*`).
#[utoipa::path(post, path = "/api/namespaces", tag = "namespaces", request_body = NamespaceRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = MessageResponse),
        (status = 200, description = "Existed; quota updated", body = MessageResponse),
        (status = 400, description = "Bad name, quantity or object count", body = ErrorBody),
        (status = 403, description = "Outside the tenant prefix, or exists and is not managed by this operator", body = ErrorBody),
        (status = 409, description = "Terminating", body = ErrorBody),
    ))]
pub async fn create_namespace(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<NamespaceRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    let namespace = TenantNamespace::parse(&request.name, state.namespace_prefix())?;
    let defaults = state.tenants.default_counts();
    let count = |field: &'static str, given: Option<i64>, default: u32| {
        given.map_or(Ok(default), |value| object_count(field, value))
    };
    let quota = TenantQuota {
        cpu: Quantity::parse("cpu_limit", &request.cpu_limit)?,
        memory: Quantity::parse("memory_limit", &request.memory_limit)?,
        storage: Quantity::parse("storage_limit", &request.storage_limit)?,
        counts: ObjectCounts {
            pods: count("pods_limit", request.pods_limit, defaults.pods)?,
            services: count("services_limit", request.services_limit, defaults.services)?,
            secrets: count("secrets_limit", request.secrets_limit, defaults.secrets)?,
            configmaps: count(
                "configmaps_limit",
                request.configmaps_limit,
                defaults.configmaps,
            )?,
            pvcs: count("pvc_limit", request.pvc_limit, defaults.pvcs)?,
        },
    };
    let outcome = state.tenants.apply(&namespace, &quota).await;
    let applied = audit(
        &key,
        "apply_namespace",
        namespace.as_str(),
        "",
        outcome.map_err(ApiError::from),
    )?;
    let (status, verb) = match applied {
        Applied::Created => (StatusCode::CREATED, "created"),
        Applied::Updated => (StatusCode::OK, "updated"),
    };
    let counts = quota.counts;
    let message = format!(
        "Namespace {namespace} {verb} with quota cpu={}, memory={}, storage={}, pods={}, services={}, secrets={}, configmaps={}, pvcs={}",
        quota.cpu.as_str(),
        quota.memory.as_str(),
        quota.storage.as_str(),
        counts.pods,
        counts.services,
        counts.secrets,
        counts.configmaps,
        counts.pvcs,
    );
    Ok((status, Json(MessageResponse { message })))
}

/// Quota (limits and use) and the releases of a tenant namespace.
#[utoipa::path(get, path = "/api/namespaces/{name}", tag = "namespaces",
    params(("name" = String, Path, description = "Tenant namespace")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The namespace", body = NamespaceInfo),
        (status = 403, description = "Outside the tenant prefix or not managed by this operator", body = ErrorBody),
        (status = 404, description = "No such namespace", body = ErrorBody),
    ))]
pub async fn get_namespace(
    State(state): State<AppState>,
    NamespacePath(namespace): NamespacePath,
) -> Result<Json<NamespaceInfo>, ApiError> {
    Ok(Json(state.releases.namespace(&namespace).await?))
}

/// Uninstall every release of a tenant namespace, then delete it. 202 while
/// it terminates; 404 once it is gone.
#[utoipa::path(delete, path = "/api/namespaces/{name}", tag = "namespaces",
    params(("name" = String, Path, description = "Tenant namespace")),
    security(("api_key" = [])),
    responses(
        (status = 202, description = "Deletion started or in progress", body = MessageResponse),
        (status = 403, description = "Outside the tenant prefix or not managed by this operator", body = ErrorBody),
        (status = 404, description = "No such namespace", body = ErrorBody),
    ))]
pub async fn delete_namespace(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    NamespacePath(namespace): NamespacePath,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    let outcome = state.releases.delete_namespace(&namespace).await;
    audit(&key, "delete_namespace", namespace.as_str(), "", outcome)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: format!("Namespace {namespace} is being deleted"),
        }),
    ))
}
