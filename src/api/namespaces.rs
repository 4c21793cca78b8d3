//! `/api/namespaces`: tenant namespaces with their quota.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};

use super::AppState;
use super::extract::ApiJson;
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::kube::namespace::{Applied, TenantQuota, apply_tenant};
use crate::model::{MessageResponse, NamespaceRequest};
use crate::names::{Quantity, TenantNamespace};

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
    match &outcome {
        Ok(applied) => {
            tracing::info!(target: "audit", key = %key.0, action = "apply_namespace", namespace = %namespace, outcome = "success", result = ?applied, "audit")
        }
        Err(error) => {
            tracing::info!(target: "audit", key = %key.0, action = "apply_namespace", namespace = %namespace, outcome = "failure", status = error.status.as_u16(), error_type = %error.body.error_type, "audit")
        }
    }
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
