//! Why a route could not be put in place or removed, and the fixed
//! sentence each reason is answered with.

use super::cloudflare::CfError;
use super::names::InputError;
use crate::error::{ApiError, Code};
use crate::kube::KubeError;

/// Why a route could not be put in place or removed.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum RouteError {
    /// Another release, a route of `/api/routes`, or someone outside this
    /// operator routes the hostname.
    #[error("hostname {0} is routed for someone else")]
    HostnameTaken(String),
    /// A Cloudflare call failed.
    #[error(transparent)]
    Cloudflare(#[from] CfError),
    /// Another replica held the shared tunnel's Lease too long.
    #[error("the shared tunnel's configuration stayed locked by another replica")]
    Busy,
    /// A Kubernetes call failed (already logged and converted).
    #[error("{0}")]
    Kube(ApiError),
    /// The route's input is not valid for this backend.
    #[error(transparent)]
    Input(#[from] InputError),
    /// Exposure (or the backend a route was made with) is not configured.
    #[error("exposure is off or its settings are incomplete")]
    Off,
}

impl From<KubeError> for RouteError {
    fn from(error: KubeError) -> Self {
        Self::Kube(error.into())
    }
}

impl From<RouteError> for ApiError {
    fn from(error: RouteError) -> Self {
        match error {
            RouteError::HostnameTaken(hostname) => ApiError::new(
                Code::HostnameTaken,
                format!("Hostname {hostname} is routed for another release or by someone else"),
            ),
            RouteError::Cloudflare(error) => error.into(),
            RouteError::Busy => ApiError::new(
                Code::RoutesBusy,
                "The shared tunnel's configuration is being changed by another replica; try again shortly",
            ),
            RouteError::Kube(error) => error,
            RouteError::Input(error) => error.into(),
            RouteError::Off => ApiError::new(
                Code::ExposureDisabled,
                "Cloudflare integration is not enabled (exposure is off, or the settings of the route's backend are incomplete)",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_errors_have_fixed_codes() {
        let taken: ApiError = RouteError::HostnameTaken("a.b.c".into()).into();
        assert_eq!(taken.code, Code::HostnameTaken);
        assert_eq!(taken.status(), axum::http::StatusCode::CONFLICT);
        let busy: ApiError = RouteError::Busy.into();
        assert_eq!(busy.code, Code::RoutesBusy);
    }
}
