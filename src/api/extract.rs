//! Extractors that validate before any I/O and reject in the contract's
//! error shape (never axum's plain-text defaults): the JSON body, and every
//! path parameter the API takes (a release, a namespace, a route's
//! subdomain, a tunnel's id).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::state::AppState;
use crate::error::{ApiError, Code};
use crate::exposure::names::{Subdomain, TunnelId};
use crate::names::{ReleaseName, TenantNamespace, ValidationError};

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(error) => ApiError::new(
            Code::InvalidBody,
            format!("Invalid request body: {}", error.body_text()),
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::new(Code::MalformedJson, "The request body is not valid JSON")
        }
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            Code::UnsupportedMediaType,
            "Send the body as JSON with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(error) if error.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(Code::BodyTooLarge, "The request body is larger than 1 MiB")
        }
        _ => ApiError::new(Code::InvalidBody, "The request body could not be read"),
    }
}

/// `{namespace}/{name}` of a release path, validated: 400 for a malformed
/// namespace or name, 403 for a namespace outside the tenant prefix.
#[derive(Debug, Clone)]
pub struct ReleasePath {
    pub namespace: TenantNamespace,
    pub name: ReleaseName,
}

impl FromRequestParts<AppState> for ReleasePath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Path((namespace, name)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    Code::InvalidPath,
                    "The path is not /api/releases/{namespace}/{name}",
                )
            })?;
        let namespace = TenantNamespace::parse(&namespace, state.namespace_prefix())
            .map_err(path_namespace_error)?;
        let name = ReleaseName::parse(&name)?;
        Ok(Self { namespace, name })
    }
}

/// `{name}` of a namespace path: 400 when malformed, 403 outside the prefix.
pub struct NamespacePath(pub TenantNamespace);

impl FromRequestParts<AppState> for NamespacePath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let name = one_segment(parts, state, "The path is not /api/namespaces/{name}").await?;
        TenantNamespace::parse(&name, state.namespace_prefix())
            .map(Self)
            .map_err(path_namespace_error)
    }
}

/// `{subdomain}` of a route path, validated (400 `invalid_subdomain`).
pub struct SubdomainPath(pub Subdomain);

impl FromRequestParts<AppState> for SubdomainPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let subdomain =
            one_segment(parts, state, "The path is not /api/routes/{subdomain}").await?;
        Ok(Self(Subdomain::parse(&subdomain)?))
    }
}

/// `{tunnel_id}` of a tunnel path: a UUID (400 otherwise).
pub struct TunnelPath(pub TunnelId);

impl FromRequestParts<AppState> for TunnelPath {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let id = one_segment(parts, state, "The path is not /api/tunnels/{tunnel_id}").await?;
        Ok(Self(TunnelId::parse(&id)?))
    }
}

/// The path's one parameter, unchecked; 400 `invalid_path` with `shape`
/// when there is none.
async fn one_segment(
    parts: &mut Parts,
    state: &AppState,
    shape: &'static str,
) -> Result<String, ApiError> {
    let Path(segment) = Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::new(Code::InvalidPath, shape))?;
    Ok(segment)
}

/// A namespace on a path: outside the prefix is 403 `namespace_forbidden`
/// (the caller addressed something that is not a tenant's), malformed is 400.
fn path_namespace_error(error: ValidationError) -> ApiError {
    match error {
        ValidationError::NamespaceOutsidePrefix { .. } => {
            ApiError::new(Code::NamespaceForbidden, error.to_string())
        }
        other => other.into(),
    }
}
