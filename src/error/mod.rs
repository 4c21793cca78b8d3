//! The one error type that reaches HTTP clients, and the one list of error
//! codes.
//!
//! Every answer that is not a success is an [`ApiError`]: a [`Code`] (which
//! alone decides the HTTP status, the `Retry-After` header and the metric
//! label) and a `detail` sentence for people. Layers below have their own
//! `thiserror` enums and know nothing of HTTP: the conversions of the
//! lowest ones (`HelmError`, `ChartError`, `KubeError`, `ValidationError`)
//! are all here, so this file sits above helm/, charts/, kube/ and
//! names.rs (and imports only their error types); the services' own
//! errors (`StorageError`, `RouteError`…) convert beside their enums.
//! Internal text (helm's stderr, API server messages, paths, anything a
//! chart rendered) is logged where it happens and never copied into `detail`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::charts::ChartError;
use crate::charts::archive::Refusal as ChartRefusal;
use crate::helm::error::too_complex;
use crate::helm::{FailureKind, HelmError, Limit};
use crate::kube::KubeError;
use crate::names::ValidationError;

/// The body of every error response, as the platform's client expects it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct ErrorBody {
    /// Human readable; shown to people by the platform.
    pub detail: String,
    /// Short machine readable name.
    pub error_type: Code,
}

/// Declares [`Code`] from one table: variant, wire name, HTTP status, and
/// what it means. Adding a code is one line here.
macro_rules! codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = $name:literal, $status:ident; )*) => {
        /// Every `error_type` the API answers with. The status of each is
        /// fixed ([`Code::status`]), so a client may branch on either.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Code {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Code {
            /// Every code, in the table's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The wire name, e.g. `release_not_found` (also the metric label).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $name,)* }
            }

            /// The HTTP status answered with this code.
            pub fn status(self) -> StatusCode {
                match self { $(Code::$variant => StatusCode::$status,)* }
            }
        }
    };
}

codes! {
    /// The body does not have the expected fields or types.
    InvalidBody = "invalid_body", BAD_REQUEST;
    /// The body is not JSON.
    MalformedJson = "malformed_json", BAD_REQUEST;
    /// The path does not have the expected segments.
    InvalidPath = "invalid_path", BAD_REQUEST;
    /// A namespace is not a DNS-1123 label.
    InvalidNamespace = "invalid_namespace", BAD_REQUEST;
    /// A release name breaks Helm's naming rule.
    InvalidReleaseName = "invalid_release_name", BAD_REQUEST;
    /// The chart reference is not an accepted form.
    InvalidChart = "invalid_chart", BAD_REQUEST;
    /// The chart source is not in ALLOWED_CHART_SOURCES.
    ChartSourceNotAllowed = "chart_source_not_allowed", BAD_REQUEST;
    /// `repo_url` is not an accepted URL.
    InvalidRepoUrl = "invalid_repo_url", BAD_REQUEST;
    /// `version` is neither a semantic version nor a range.
    InvalidVersion = "invalid_version", BAD_REQUEST;
    /// A quota field is not a Kubernetes quantity.
    InvalidQuantity = "invalid_quantity", BAD_REQUEST;
    /// `values` are too deep, or do not match the chart's values schema.
    InvalidValues = "invalid_values", BAD_REQUEST;
    /// An upgrade without `chart`.
    ChartRequired = "chart_required", BAD_REQUEST;
    /// The sidecar request is not acceptable (name, image, ports, env…).
    InvalidSidecar = "invalid_sidecar", BAD_REQUEST;
    /// The sidecar's Deployment is not (or no longer) in the release.
    SidecarTargetMissing = "sidecar_target_missing", BAD_REQUEST;
    /// A rollback without a revision, of a release that has only one.
    NoPreviousRevision = "no_previous_revision", BAD_REQUEST;
    /// A subdomain is not a DNS label of at most 59 characters.
    InvalidSubdomain = "invalid_subdomain", BAD_REQUEST;
    /// An app route's subdomain ends in `-mcp`: those are the MCP
    /// sidecars' routes (`{release subdomain}-mcp`).
    SubdomainReserved = "subdomain_reserved", BAD_REQUEST;
    /// `service_name`, `service_port` or `service_url` of a route is not valid.
    InvalidService = "invalid_service", BAD_REQUEST;
    /// A tunnel's hostname is not a valid DNS name.
    InvalidHostname = "invalid_hostname", BAD_REQUEST;
    /// A tunnel's name is empty, too long or has control characters.
    InvalidTunnelName = "invalid_tunnel_name", BAD_REQUEST;
    /// `/api/routes` while exposure is off (EXPOSURE_BACKEND).
    ExposureDisabled = "exposure_disabled", BAD_REQUEST;
    /// `/api/tunnels` without a Cloudflare API token and account.
    TunnelsDisabled = "tunnels_disabled", BAD_REQUEST;
    /// The chart (or the requested version) does not exist at its source.
    ChartNotFound = "chart_not_found", BAD_REQUEST;
    /// The chart failed to render with the given values.
    ChartRenderFailed = "chart_render_failed", BAD_REQUEST;
    /// The chart would create objects outside its namespace.
    ChartNotConfined = "chart_not_confined", BAD_REQUEST;
    /// A values schema of the chart (or of a subchart) names something
    /// outside the chart that helm would fetch or read.
    ChartSchemaRefused = "chart_schema_refused", BAD_REQUEST;
    /// The chart archive is unreadable or beyond the operator's bounds.
    ChartArchiveRefused = "chart_archive_refused", BAD_REQUEST;
    /// The cluster refused the chart's objects (quota, admission, RBAC).
    RejectedByCluster = "rejected_by_cluster", BAD_REQUEST;
    /// The chart needs more memory, CPU or time to render (or its rendering
    /// expands to more) than the operator allows; nothing was created.
    ChartTooComplex = "chart_too_complex", BAD_REQUEST;
    /// No API key, or not one of ours.
    Unauthorized = "unauthorized", UNAUTHORIZED;
    /// The namespace is outside the tenant prefix.
    NamespaceForbidden = "namespace_forbidden", FORBIDDEN;
    /// The namespace exists but this operator does not manage it.
    NamespaceNotManaged = "namespace_not_managed", FORBIDDEN;
    /// No such endpoint.
    NotFound = "not_found", NOT_FOUND;
    /// No such release.
    ReleaseNotFound = "release_not_found", NOT_FOUND;
    /// The release has no such revision.
    RevisionNotFound = "revision_not_found", NOT_FOUND;
    /// No such namespace.
    NamespaceNotFound = "namespace_not_found", NOT_FOUND;
    /// The release has no sidecar.
    SidecarNotFound = "sidecar_not_found", NOT_FOUND;
    /// No such tunnel (or it was deleted).
    TunnelNotFound = "tunnel_not_found", NOT_FOUND;
    /// The endpoint does not take this method.
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED;
    /// Install of a name that already has a release.
    ReleaseExists = "release_exists", CONFLICT;
    /// Another operation runs on the release (here or in another replica).
    OperationInProgress = "operation_in_progress", CONFLICT;
    /// Upgrade of a release without a deployed revision.
    NoDeployedRelease = "no_deployed_release", CONFLICT;
    /// The namespace is being deleted.
    NamespaceTerminating = "namespace_terminating", CONFLICT;
    /// A Kubernetes write lost a race; retrying may succeed.
    KubernetesConflict = "kubernetes_conflict", CONFLICT;
    /// The hostname is routed for another release or by someone else.
    HostnameTaken = "hostname_taken", CONFLICT;
    /// A live tunnel already has this name.
    TunnelNameTaken = "tunnel_name_taken", CONFLICT;
    /// A Secret `paas-operator.<release>` exists that the operator did not
    /// make: what it keeps about the release cannot be written (or read).
    KeptStateConflict = "kept_state_conflict", CONFLICT;
    /// The body did not arrive within BODY_READ_TIMEOUT.
    BodyTimeout = "body_timeout", REQUEST_TIMEOUT;
    /// The body is larger than the limit.
    BodyTooLarge = "body_too_large", PAYLOAD_TOO_LARGE;
    /// The body is not sent as JSON.
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE;
    /// helm failed for a reason we cannot name.
    HelmFailed = "helm_failed", INTERNAL_SERVER_ERROR;
    /// The helm binary could not be started.
    HelmUnavailable = "helm_unavailable", INTERNAL_SERVER_ERROR;
    /// helm succeeded but printed something unreadable.
    HelmOutputUnreadable = "helm_output_unreadable", INTERNAL_SERVER_ERROR;
    /// The release's record in the cluster is corrupt or too large to read
    /// (the release can still be uninstalled).
    ReleaseRecordUnreadable = "release_record_unreadable", CONFLICT;
    /// The Kubernetes API failed.
    KubernetesError = "kubernetes_error", INTERNAL_SERVER_ERROR;
    /// The Kubernetes API refused the operator itself (its RBAC).
    OperatorForbidden = "operator_forbidden", INTERNAL_SERVER_ERROR;
    /// The confinement check could not be prepared.
    ConfinementUnavailable = "confinement_unavailable", INTERNAL_SERVER_ERROR;
    /// The tenant identity helm runs as is not authorized in the cluster.
    TenantIdentityUnavailable = "tenant_identity_unavailable", INTERNAL_SERVER_ERROR;
    /// A fetched chart could not be stored for helm (the cache directory).
    ChartCacheUnavailable = "chart_cache_unavailable", INTERNAL_SERVER_ERROR;
    /// The chart source could not be reached.
    ChartSourceUnreachable = "chart_source_unreachable", BAD_GATEWAY;
    /// Cloudflare refused a call (its reason is logged).
    CloudflareError = "cloudflare_error", BAD_GATEWAY;
    /// The Kubernetes API is unreachable.
    KubernetesUnavailable = "kubernetes_unavailable", SERVICE_UNAVAILABLE;
    /// Every helm slot is busy.
    OperatorBusy = "operator_busy", SERVICE_UNAVAILABLE;
    /// The operation was cancelled (the service is stopping).
    Cancelled = "cancelled", SERVICE_UNAVAILABLE;
    /// helm ended abnormally mid-write (killed, stopped at a deadline or at
    /// shutdown, or its Lease could not be kept); the release was marked
    /// failed (or will be within seconds) and retrying the call is safe.
    HelmInterrupted = "helm_interrupted", SERVICE_UNAVAILABLE;
    /// `/ready`: not ready to serve.
    NotReady = "not_ready", SERVICE_UNAVAILABLE;
    /// The pods of a release could not be read.
    PodsUnavailable = "pods_unavailable", SERVICE_UNAVAILABLE;
    /// Cloudflare did not answer in time, or kept failing (5xx, 429).
    CloudflareUnavailable = "cloudflare_unavailable", SERVICE_UNAVAILABLE;
    /// Another replica held the shared tunnel's configuration too long.
    RoutesBusy = "routes_busy", SERVICE_UNAVAILABLE;
    /// helm did not finish within its timeout.
    HelmTimeout = "helm_timeout", GATEWAY_TIMEOUT;
}

impl Code {
    /// Seconds a client should wait before retrying (`Retry-After`).
    pub fn retry_after(self) -> Option<u32> {
        match self {
            Code::OperatorBusy | Code::CloudflareUnavailable => Some(10),
            Code::KubernetesUnavailable
            | Code::HelmInterrupted
            | Code::NotReady
            | Code::PodsUnavailable
            | Code::RoutesBusy => Some(5),
            _ => None,
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error answered to an HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: Code,
    pub detail: String,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    pub fn unauthorized() -> Self {
        Self::new(Code::Unauthorized, "Invalid or missing API key")
    }

    pub fn release_not_found(
        namespace: impl std::fmt::Display,
        name: impl std::fmt::Display,
    ) -> Self {
        Self::new(
            Code::ReleaseNotFound,
            format!("Release {namespace}/{name} not found"),
        )
    }

    pub fn namespace_not_found(namespace: impl std::fmt::Display) -> Self {
        Self::new(
            Code::NamespaceNotFound,
            format!("Namespace {namespace} not found"),
        )
    }

    pub fn operation_in_progress(target: impl std::fmt::Display) -> Self {
        Self::new(
            Code::OperationInProgress,
            format!("Another operation is in progress on {target}; try again when it has finished"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::metrics::api_error(self.code.as_str());
        let body = ErrorBody {
            detail: self.detail,
            error_type: self.code,
        };
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        if let Some(seconds) = self.code.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.code.status().as_u16(),
            self.code,
            self.detail
        )
    }
}

impl std::error::Error for ApiError {}

// How the lower layers' errors reach clients. helm/, kube/, charts/ and
// names.rs have their own error enums and know nothing of HTTP; this file
// imports them (and only their error types) to map each to a `Code` and a
// fixed sentence. Whatever they carry (stderr, API server messages, URLs)
// is logged here, never put in `detail`.

/// How helm failures reach clients: a fixed sentence per kind; helm's
/// stderr stays in the log.
impl From<HelmError> for ApiError {
    fn from(error: HelmError) -> Self {
        match error {
            HelmError::Busy => ApiError::new(
                Code::OperatorBusy,
                "Too many helm operations are running; try again shortly",
            ),
            HelmError::Spawn { .. } => {
                tracing::error!(%error, "helm could not be started");
                ApiError::new(
                    Code::HelmUnavailable,
                    "The helm binary could not be started",
                )
            }
            HelmError::DeadlineExceeded { ref target, .. } => ApiError::new(
                Code::HelmTimeout,
                format!("The helm operation on {target} did not finish in time and was stopped"),
            ),
            HelmError::Cancelled => ApiError::new(Code::Cancelled, "The operation was cancelled"),
            HelmError::Output { .. } | HelmError::OutputTooLarge { .. } => {
                tracing::error!(%error, "unexpected helm output");
                ApiError::new(
                    Code::HelmOutputUnreadable,
                    "helm's output could not be read",
                )
            }
            HelmError::Failed {
                operation,
                ref target,
                kind,
            } => helm_failed(operation, target, kind),
            error @ (HelmError::NotConfined { .. } | HelmError::TooComplex { .. }) => {
                helm_refused(error)
            }
            HelmError::Died {
                operation,
                ref target,
                death,
            } => {
                tracing::error!(operation, release = %target, ?death, "helm died abnormally");
                // Retrying is safe: the release service re-reads the release
                // and repairs a pending revision before this is answered.
                ApiError::new(
                    Code::HelmInterrupted,
                    format!("helm {operation} for {target} stopped abnormally; retrying is safe"),
                )
            }
            HelmError::ConfineSetup(_) => {
                tracing::error!(%error, "confinement check not prepared");
                ApiError::new(
                    Code::ConfinementUnavailable,
                    "The confinement check could not be prepared",
                )
            }
        }
    }
}

/// A rendering the checker refused, or one that went over a limit.
fn helm_refused(error: HelmError) -> ApiError {
    match error {
        HelmError::NotConfined {
            ref namespace,
            ref violations,
        } if too_complex(violations).is_none() => ApiError::new(
            Code::ChartNotConfined,
            crate::render::confine::refusal(namespace, violations),
        ),
        HelmError::NotConfined {
            namespace,
            violations,
        } => {
            let limit = too_complex(&violations).unwrap_or(Limit::Size);
            HelmError::TooComplex {
                operation: "check",
                target: namespace,
                limit,
            }
            .into()
        }
        HelmError::TooComplex {
            ref target, limit, ..
        } => {
            tracing::warn!(release = %target, limit = limit.label(), "refused: the chart went over a limit");
            ApiError::new(
                Code::ChartTooComplex,
                format!(
                    "The chart needs more memory, CPU or time to render than the operator allows ({}); nothing was created",
                    limit_phrase(limit)
                ),
            )
        }
        other => ApiError::from(other),
    }
}

/// What went over, for people.
fn limit_phrase(limit: Limit) -> &'static str {
    match limit {
        Limit::RenderTime => "rendering took too long",
        Limit::Memory => "rendering needed too much memory",
        Limit::Cpu => "rendering needed too much CPU time",
        Limit::MemoryBudget => "rendering needed too much memory while the operator was busy",
        Limit::Expansion => "the rendering expands to too many objects (YAML aliases)",
        Limit::Size => "the rendering is too large",
        Limit::Crashed => "helm could not render it within its limits",
    }
}

/// A helm command that failed, by what its stderr said.
fn helm_failed(operation: &str, target: &str, kind: FailureKind) -> ApiError {
    let (code, detail) = match kind {
        FailureKind::NameInUse => (
            Code::ReleaseExists,
            format!("Release {target} already exists"),
        ),
        FailureKind::OperationInProgress => return ApiError::operation_in_progress(target),
        FailureKind::ReleaseNotFound => {
            (Code::ReleaseNotFound, format!("Release {target} not found"))
        }
        FailureKind::RevisionNotFound => (
            Code::RevisionNotFound,
            format!("Release {target} has no such revision"),
        ),
        FailureKind::NoDeployedRelease => (
            Code::NoDeployedRelease,
            format!(
                "Release {target} has no deployed revision to upgrade; roll back or reinstall it"
            ),
        ),
        FailureKind::ChartNotFound => (
            Code::ChartNotFound,
            "The chart (or the requested version) was not found at its source".into(),
        ),
        FailureKind::ChartSourceUnreachable => (
            Code::ChartSourceUnreachable,
            "The chart source could not be reached".into(),
        ),
        FailureKind::RenderFailed => (
            Code::ChartRenderFailed,
            "The chart failed to render with the given values".into(),
        ),
        FailureKind::ValuesInvalid => (
            Code::InvalidValues,
            "The values do not match the chart's values schema".into(),
        ),
        FailureKind::RejectedByCluster => (
            Code::RejectedByCluster,
            "The cluster refused the chart's objects (quota, admission policy or permissions)"
                .into(),
        ),
        FailureKind::Conflict => (
            Code::KubernetesConflict,
            format!(
                "A write of release {target} lost a race inside the Kubernetes API (another change to the same object, such as the namespace's quota); try again"
            ),
        ),
        FailureKind::ClusterUnreachable => (
            Code::KubernetesUnavailable,
            "The Kubernetes API is unreachable; try again shortly".into(),
        ),
        FailureKind::TimedOut => (
            Code::HelmTimeout,
            format!(
                "The helm operation on {target} did not finish within its timeout; the release is marked failed"
            ),
        ),
        FailureKind::Other => (
            Code::HelmFailed,
            format!("helm {operation} failed for {target}"),
        ),
    };
    ApiError::new(code, detail)
}

impl From<ChartError> for ApiError {
    fn from(error: ChartError) -> Self {
        tracing::warn!(%error, "chart not handed to helm");
        match error {
            ChartError::NotFound(_) => ApiError::new(
                Code::ChartNotFound,
                "The chart (or the requested version) was not found at its source",
            ),
            ChartError::NotAllowed(_) => ApiError::new(
                Code::ChartSourceNotAllowed,
                "The chart's download would reach a host that is not an allowed chart source",
            ),
            ChartError::Unreachable(_) => ApiError::new(
                Code::ChartSourceUnreachable,
                "The chart source could not be reached, or its answer could not be used",
            ),
            ChartError::TimedOut(seconds) => ApiError::new(
                Code::ChartSourceUnreachable,
                format!("The chart source did not deliver the chart within {seconds} s"),
            ),
            ChartError::TooLarge(bytes) => ApiError::new(
                Code::ChartArchiveRefused,
                format!(
                    "The chart is refused: its archive is larger than {} MiB",
                    bytes >> 20
                ),
            ),
            ChartError::Refused(refusal @ ChartRefusal::Archive(_)) => ApiError::new(
                Code::ChartArchiveRefused,
                format!("The chart is refused: {refusal}"),
            ),
            ChartError::Refused(refusal @ ChartRefusal::Schema { .. }) => ApiError::new(
                Code::ChartSchemaRefused,
                format!(
                    "The chart is refused: {refusal}. helm would fetch or read what it names \
                     while validating values; only local references (#...) and the standard \
                     meta-schemas are accepted"
                ),
            ),
            ChartError::Cache(_) => ApiError::new(
                Code::ChartCacheUnavailable,
                "The chart could not be stored for helm",
            ),
        }
    }
}

/// API failures reach clients as a fixed sentence naming the action;
/// the API server's own message is logged.
impl From<KubeError> for ApiError {
    fn from(error: KubeError) -> Self {
        if let KubeError::Api { source, .. } = &error {
            crate::metrics::kube_api_error(source);
        }
        match &error {
            KubeError::NotManaged(name) => ApiError::new(
                Code::NamespaceNotManaged,
                format!("Namespace {name} exists and is not managed by this operator"),
            ),
            KubeError::PolicyUnreadable => ApiError::new(
                Code::TenantIdentityUnavailable,
                "The operator's built-in tenant policy cannot be read",
            ),
            KubeError::IdentityNotReady(name) => ApiError::new(
                Code::TenantIdentityUnavailable,
                format!(
                    "The tenant identity of namespace {name} is not usable; the operator's cluster policy may be missing"
                ),
            ),
            KubeError::NotAnswering => ApiError::new(
                Code::KubernetesUnavailable,
                "The Kubernetes API is not answering; try again shortly",
            ),
            KubeError::Terminating(name) => ApiError::new(
                Code::NamespaceTerminating,
                format!("Namespace {name} is being deleted; try again when it is gone"),
            ),
            KubeError::Api { action, source } if crate::kube::is_unreachable(source) => {
                tracing::error!(%error, "kubernetes API unreachable");
                ApiError::new(
                    Code::KubernetesUnavailable,
                    format!("The Kubernetes API is unreachable ({action}); try again shortly"),
                )
            }
            KubeError::Api { action, source } if crate::kube::is_namespace_terminating(source) => {
                tracing::info!(%error, "the namespace is being deleted");
                ApiError::new(
                    Code::NamespaceTerminating,
                    format!("The namespace is being deleted ({action}); try again when it is gone"),
                )
            }
            KubeError::Api { action, source } => {
                tracing::error!(%error, "kubernetes API error");
                let status = match source {
                    kube::Error::Api(status) => status.code,
                    _ => 500,
                };
                match status {
                    409 => ApiError::new(
                        Code::KubernetesConflict,
                        format!("Conflict while {action}; try again"),
                    ),
                    403 => ApiError::new(
                        Code::OperatorForbidden,
                        format!("The operator is not allowed {action}"),
                    ),
                    _ => ApiError::new(
                        Code::KubernetesError,
                        format!("The Kubernetes API failed {action}"),
                    ),
                }
            }
        }
    }
}

/// The error code clients get when the value came in a body (400). A
/// namespace outside the prefix on a path is 403 instead
/// (`namespace_forbidden`, see the API's path extractors).
fn validation_code(error: &ValidationError) -> Code {
    match error {
        ValidationError::NamespaceSyntax(_) | ValidationError::NamespaceOutsidePrefix { .. } => {
            Code::InvalidNamespace
        }
        ValidationError::ReleaseName(_) => Code::InvalidReleaseName,
        ValidationError::Chart(..) => Code::InvalidChart,
        ValidationError::ChartSourceNotAllowed(_) => Code::ChartSourceNotAllowed,
        ValidationError::RepoUrl(..) => Code::InvalidRepoUrl,
        ValidationError::Version(_) => Code::InvalidVersion,
        ValidationError::Quantity { .. } | ValidationError::ObjectCount { .. } => {
            Code::InvalidQuantity
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        ApiError::new(validation_code(&error), error.to_string())
    }
}

#[cfg(test)]
mod tests;
