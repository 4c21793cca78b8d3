//! `/api/namespaces`: tenant namespaces with their quota, defaults,
//! isolation and lifecycle.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::{Extension, Json};

use super::AppState;
use super::extract::{ApiJson, path_namespace_error};
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::kube::KubeError;
use crate::kube::namespace::{Applied, TenantQuota, apply_tenant, delete_tenant, read_tenant};
use crate::model::{MessageResponse, NamespaceInfo, NamespaceRequest, QuotaUsage};
use crate::names::{Quantity, ReleaseName, TenantNamespace};

/// Create a tenant namespace with a resource quota, or update its quota.
#[utoipa::path(post, path = "/api/namespaces", tag = "namespaces", request_body = NamespaceRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Created", body = MessageResponse),
        (status = 200, description = "Existed; quota updated", body = MessageResponse),
        (status = 400, description = "Invalid name or quantity", body = ErrorBody),
        (status = 409, description = "Exists but not managed by this operator, or terminating", body = ErrorBody),
    ))]
pub async fn create_namespace(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<NamespaceRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), ApiError> {
    let namespace = TenantNamespace::parse(&request.name, &state.config.namespace_prefix)?;
    let quota = TenantQuota {
        cpu: Quantity::parse("cpu_limit", &request.cpu_limit)?,
        memory: Quantity::parse("memory_limit", &request.memory_limit)?,
        storage: Quantity::parse("storage_limit", &request.storage_limit)?,
    };
    let outcome = apply_tenant(&state.client, &state.config.tenant, &namespace, &quota)
        .await
        .map_err(ApiError::from);
    audit(&key, "apply_namespace", &namespace, &outcome);
    let (status, verb) = match outcome? {
        Applied::Created => (StatusCode::CREATED, "created"),
        Applied::Updated => (StatusCode::OK, "updated"),
    };
    let message = format!(
        "Namespace {namespace} {verb} with quota cpu={}, memory={}, storage={}",
        quota.cpu.as_str(),
        quota.memory.as_str(),
        quota.storage.as_str()
    );
    Ok((status, Json(MessageResponse { message })))
}

/// `{name}` of a namespace path: 400 when malformed, 403 outside the prefix.
pub struct NamespacePath(pub TenantNamespace);

impl FromRequestParts<AppState> for NamespacePath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path(name) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::bad_request("invalid_path", "The path is not /api/namespaces/{name}")
            })?;
        TenantNamespace::parse(&name, &state.config.namespace_prefix)
            .map(Self)
            .map_err(path_namespace_error)
    }
}

/// A namespace that exists but is not ours is forbidden on these paths.
fn not_ours_is_forbidden(error: KubeError) -> ApiError {
    match error {
        KubeError::NotManaged(name) => ApiError::forbidden(
            "namespace_not_managed",
            format!("Namespace {name} is not managed by this operator"),
        ),
        other => other.into(),
    }
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
    let tenant = read_tenant(&state.client, &namespace)
        .await
        .map_err(not_ours_is_forbidden)?;
    let Some(tenant) = tenant else {
        return Err(namespace_not_found(&namespace));
    };
    let mut releases = Vec::new();
    for name in state.helm.release_names(&namespace).await? {
        let Ok(name) = ReleaseName::parse(&name) else {
            continue;
        };
        if let Some(release) = state.helm.latest(&namespace, &name).await? {
            releases.push(release.to_info(false));
        }
    }
    Ok(Json(NamespaceInfo {
        name: namespace.to_string(),
        phase: tenant.phase,
        quota: QuotaUsage {
            hard: tenant.hard,
            used: tenant.used,
        },
        releases,
    }))
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
    let outcome = async {
        let tenant = read_tenant(&state.client, &namespace)
            .await
            .map_err(not_ours_is_forbidden)?;
        let Some(tenant) = tenant else {
            return Err(namespace_not_found(&namespace));
        };
        if tenant.phase != "Terminating" {
            for name in state.helm.release_names(&namespace).await? {
                let Ok(name) = ReleaseName::parse(&name) else {
                    continue;
                };
                super::releases::locked(&state, &namespace, &name, async {
                    Ok(state.helm.uninstall(&namespace, &name).await?)
                })
                .await?;
            }
            delete_tenant(&state.client, &namespace).await?;
        }
        Ok(())
    }
    .await;
    state.cache.forget(namespace.as_str());
    audit(&key, "delete_namespace", &namespace, &outcome);
    outcome?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: format!("Namespace {namespace} is being deleted"),
        }),
    ))
}

fn namespace_not_found(namespace: &TenantNamespace) -> ApiError {
    ApiError::not_found(
        "namespace_not_found",
        format!("Namespace {namespace} not found"),
    )
}

fn audit<T: std::fmt::Debug>(
    key: &KeyId,
    action: &'static str,
    namespace: &TenantNamespace,
    outcome: &Result<T, ApiError>,
) {
    match outcome {
        Ok(result) => tracing::info!(
            target: "audit", key = %key.0, action, namespace = %namespace, outcome = "success", result = ?result, "audit"
        ),
        Err(error) => tracing::info!(
            target: "audit", key = %key.0, action, namespace = %namespace, outcome = "failure",
            status = error.status.as_u16(), error_type = %error.body.error_type, "audit"
        ),
    }
}
