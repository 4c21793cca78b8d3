//! Extractors that validate before any I/O and reject in the contract's
//! error shape (never axum's plain-text defaults).

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::error::{ApiError, Code};
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

/// A namespace on a path: outside the prefix is 403 `namespace_forbidden`
/// (the caller addressed something that is not a tenant's), malformed is 400.
pub fn path_namespace_error(error: ValidationError) -> ApiError {
    match error {
        ValidationError::NamespaceOutsidePrefix { .. } => {
            ApiError::new(Code::NamespaceForbidden, error.to_string())
        }
        other => other.into(),
    }
}
