//! `/api/releases`: install, get, upgrade, uninstall, roll back, list
//! revisions and report pods of a Helm release.
//!
//! Reads come from the watch-fed read cache (`kube::cache`) or, when it
//! cannot answer, from Helm's storage; never from a helm process. Every
//! write holds the release's lock, runs helm, and emits one audit event.
//! Install and upgrade leave it to helm to refuse a name in use or a missing
//! or pending release (it checks before changing anything), and read the
//! release only then, so their happy path makes no Kubernetes call but the
//! Lease besides helm's own: a consistent LIST of Secrets can wait up to
//! ~100 ms for the API server's watch cache. With Helm 3 and confinement,
//! which renders first, they read the release before the render instead.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponseParts, ResponseParts};
use axum::{Extension, Json};
use serde_json::{Map, Value};

use super::AppState;
use super::extract::{ApiJson, ReleasePath};
use crate::auth::KeyId;
use crate::error::{ApiError, ErrorBody};
use crate::helm::confine::Rules;
use crate::helm::{ChartArgs, FailureKind, HelmError, HelmRelease, ValuesMode, merge_values};
use crate::kube::cache::{CachedRevision, Expectation};
use crate::kube::namespace::{TenantQuota, ensure_tenant};
use crate::kube::pods::release_pods;
use crate::locks::{LockError, ReleaseGuard};
use crate::model::{
    InstallRequest, MessageResponse, ReleaseInfo, ReleaseStatusResponse, RevisionList,
    RollbackRequest, UpgradeRequest, default_cpu, default_memory, default_storage,
};
use crate::names::{ChartRef, ChartVersion, Quantity, ReleaseName, TenantNamespace};

/// Maximum nesting depth of `values`.
const MAX_VALUES_DEPTH: usize = 32;

/// Install a chart as a new release.
#[utoipa::path(post, path = "/api/releases", tag = "releases", request_body = InstallRequest,
    security(("api_key" = [])),
    responses(
        (status = 201, description = "Installed", body = ReleaseInfo),
        (status = 400, description = "Invalid input, unknown chart, or chart failed to render", body = ErrorBody),
        (status = 401, description = "Invalid or missing API key", body = ErrorBody),
        (status = 409, description = "Name in use, or another operation runs on it", body = ErrorBody),
        (status = 500, description = "helm failed", body = ErrorBody),
    ))]
pub async fn install_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    ApiJson(request): ApiJson<InstallRequest>,
) -> Result<(StatusCode, Json<ReleaseInfo>), ApiError> {
    let namespace = TenantNamespace::parse(&request.namespace, &state.config.namespace_prefix)?;
    let name = ReleaseName::parse(&request.name)?;
    let chart = ChartRef::parse(
        &request.chart,
        request.repo_url.as_deref(),
        &state.chart_policy,
    )?;
    let version = request
        .version
        .as_deref()
        .map(ChartVersion::parse)
        .transpose()?;
    let values = checked_values(request.values)?;

    let outcome = async {
        if request.create_namespace {
            ensure_tenant(
                &state.client,
                &state.config.tenant,
                &namespace,
                &default_quota()?,
            )
            .await?;
        }
        // The release's Lease lives in its namespace, so that comes first.
        locked(&state, &namespace, &name, async {
            // helm refuses a name in use itself (the same 409, and without
            // our reading the release first); before a separate render,
            // refuse it before paying for that.
            if renders_first(&state) && state.helm.latest(&namespace, &name).await?.is_some() {
                return Err(ApiError::conflict(
                    "release_exists",
                    format!("Release {namespace}/{name} already exists"),
                ));
            }
            let chart_args = ChartArgs {
                chart: &chart,
                version: version.as_ref(),
                plain_http: chart.plain_http(&state.chart_policy),
            };
            let confine =
                check_confinement(&state, &namespace, &name, chart_args, false, &values).await?;
            Ok(state
                .helm
                .install(&namespace, &name, chart_args, &values, confine.as_ref())
                .await?)
        })
        .await
    }
    .await;
    expect_after_write(&state, (&namespace, &name), &outcome, expect_release);
    let release = audit(&key, "install", &namespace, &name, outcome)?;
    Ok((StatusCode::CREATED, Json(release.to_info(true))))
}

/// The release at its latest revision, whatever its status.
#[utoipa::path(get, path = "/api/releases/{namespace}/{name}", tag = "releases",
    params(("namespace" = String, Path, description = "Tenant namespace"), ("name" = String, Path, description = "Release name")),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The release", body = ReleaseInfo, headers(("x-served-from" = String, description = "`cache` (the watch-fed index) or `api` (read from the Kubernetes API)"))),
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
pub async fn get_release(
    State(state): State<AppState>,
    path: ReleasePath,
) -> Result<(ServedFrom, Json<ReleaseInfo>), ApiError> {
    let (from, latest) = read_latest(&state, &path).await?;
    Ok((from, Json(latest.release.to_info(false))))
}

/// Upgrade a release (new chart version and/or values).
#[utoipa::path(patch, path = "/api/releases/{namespace}/{name}", tag = "releases", request_body = UpgradeRequest,
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Upgraded", body = ReleaseInfo),
        (status = 400, description = "Invalid input or chart missing", body = ErrorBody),
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
        (status = 500, description = "helm failed", body = ErrorBody),
    ))]
pub async fn upgrade_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    path: ReleasePath,
    ApiJson(request): ApiJson<UpgradeRequest>,
) -> Result<Json<ReleaseInfo>, ApiError> {
    let Some(chart) = request.chart.as_deref() else {
        return Err(ApiError::bad_request(
            "chart_required",
            "An upgrade needs `chart` (the chart reference to upgrade to)",
        ));
    };
    let chart = ChartRef::parse(chart, request.repo_url.as_deref(), &state.chart_policy)?;
    let version = request
        .version
        .as_deref()
        .map(ChartVersion::parse)
        .transpose()?;
    let values = checked_values(request.values)?;
    let mode = if request.reset_values || !request.reuse_values {
        ValuesMode::Reset
    } else {
        ValuesMode::Reuse
    };
    let ReleasePath { namespace, name } = &path;

    let outcome = locked(&state, namespace, name, async {
        let chart_args = ChartArgs {
            chart: &chart,
            version: version.as_ref(),
            plain_http: chart.plain_http(&state.chart_policy),
        };
        // A separate render needs the values helm will use, so the release
        // is read first; else only when helm refuses the upgrade (below).
        let effective = if renders_first(&state) {
            let previous = require_release(&state, &path).await?;
            recover_if_stuck(&state, namespace, name, &previous).await?;
            match mode {
                ValuesMode::Reuse => {
                    merge_values(&previous.config.clone().unwrap_or_default(), &values)
                }
                ValuesMode::Reset => values.clone(),
            }
        } else {
            values.clone()
        };
        let confine =
            check_confinement(&state, namespace, name, chart_args, true, &effective).await?;
        let upgrade = || {
            state
                .helm
                .upgrade(namespace, name, chart_args, mode, &values, confine.as_ref())
        };
        match upgrade().await {
            Ok(release) => Ok(release),
            Err(refused) => retry_if_recovered(&state, &path, refused, upgrade).await,
        }
    })
    .await;
    expect_after_write(&state, (namespace, name), &outcome, expect_release);
    let release = audit(&key, "upgrade", namespace, name, outcome)?;
    Ok(Json(release.to_info(true)))
}

/// Uninstall a release.
#[utoipa::path(delete, path = "/api/releases/{namespace}/{name}", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Uninstalled", body = MessageResponse),
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release (already gone)", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
    ))]
pub async fn uninstall_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    path: ReleasePath,
) -> Result<Json<MessageResponse>, ApiError> {
    let ReleasePath { namespace, name } = &path;
    let outcome = locked(&state, namespace, name, async {
        let release = require_release(&state, &path).await?;
        state.helm.uninstall(namespace, name).await?;
        Ok(release)
    })
    .await;
    expect_after_write(&state, (namespace, name), &outcome, |_| Expectation::Gone);
    audit(&key, "uninstall", namespace, name, outcome)?;
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
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release or revision", body = ErrorBody),
        (status = 409, description = "Another operation runs on the release", body = ErrorBody),
        (status = 500, description = "helm failed", body = ErrorBody),
    ))]
pub async fn rollback_release(
    State(state): State<AppState>,
    Extension(key): Extension<KeyId>,
    path: ReleasePath,
    ApiJson(request): ApiJson<RollbackRequest>,
) -> Result<Json<MessageResponse>, ApiError> {
    let ReleasePath { namespace, name } = &path;
    let wanted = request.revision.filter(|r| *r > 0);
    let outcome = locked(&state, namespace, name, async {
        let history = state.helm.history(namespace, name).await?;
        let Some(latest) = history.last() else {
            return Err(release_not_found(&path));
        };
        // Only revision numbers are used below, which recovery leaves as they are.
        recover_if_stuck(&state, namespace, name, latest).await?;
        let target = match wanted {
            Some(revision) => revision,
            None => latest
                .version
                .checked_sub(1)
                .filter(|r| *r > 0)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "no_previous_revision",
                        format!("Release {namespace}/{name} has no previous revision"),
                    )
                })?,
        };
        if !history.iter().any(|r| r.version == target) {
            return Err(ApiError::not_found(
                "revision_not_found",
                format!("Release {namespace}/{name} has no revision {target}"),
            ));
        }
        let release = state.helm.rollback(namespace, name, Some(target)).await?;
        Ok((target, release))
    })
    .await;
    expect_after_write(&state, (namespace, name), &outcome, |(_, release)| {
        expect_release(release)
    });
    let (target, release) = audit(&key, "rollback", namespace, name, outcome)?;
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
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
    ))]
pub async fn list_revisions(
    State(state): State<AppState>,
    path: ReleasePath,
) -> Result<(ServedFrom, Json<RevisionList>), ApiError> {
    let (namespace, name) = (path.namespace.as_str(), path.name.as_str());
    let (from, revisions) = match state.cache.history(namespace, name).await {
        Some(cached) => {
            let history = cached?;
            let revisions = history.iter().map(|r| r.release.to_revision()).collect();
            (ServedFrom::Cache, revisions)
        }
        None => {
            let history = state.helm.history(&path.namespace, &path.name).await?;
            if !history.is_empty() {
                state.cache.warm(namespace);
            }
            let revisions: Vec<_> = history.iter().map(HelmRelease::to_revision).collect();
            (ServedFrom::Api, revisions)
        }
    };
    if revisions.is_empty() {
        return Err(release_not_found(&path));
    }
    Ok((from, Json(RevisionList { revisions })))
}

/// The release and its pods. When pods cannot be read the answer is 503
/// (with `pod_retrieval_error`), never an empty list that looks healthy.
#[utoipa::path(get, path = "/api/releases/{namespace}/{name}/status", tag = "releases",
    params(("namespace" = String, Path), ("name" = String, Path)),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Release and pods", body = ReleaseStatusResponse, headers(("x-served-from" = String, description = "`cache` or `api`"))),
        (status = 403, description = "Namespace outside the tenant prefix", body = ErrorBody),
        (status = 404, description = "No such release", body = ErrorBody),
        (status = 503, description = "Pods could not be read", body = ErrorBody),
    ))]
pub async fn release_status(
    State(state): State<AppState>,
    path: ReleasePath,
) -> Result<(ServedFrom, Json<ReleaseStatusResponse>), ApiError> {
    let (namespace, name) = (path.namespace.as_str(), path.name.as_str());
    let (from, latest) = read_latest(&state, &path).await?;
    let stuck = is_stuck(&state, &path, &latest.release).await;
    let cached = match from {
        ServedFrom::Cache => state.cache.release_pods(namespace, name, &latest.selectors),
        ServedFrom::Api => None,
    };
    let (from, pods) = match cached {
        Some(pods) => (ServedFrom::Cache, Ok(pods)),
        None => {
            let listed = release_pods(&state.client, namespace, name, &latest.selectors).await;
            (ServedFrom::Api, listed)
        }
    };
    match pods {
        Ok(pods) => Ok((
            from,
            Json(ReleaseStatusResponse {
                release: latest.release.to_info(false),
                pods,
                pod_retrieval_error: None,
                stuck,
            }),
        )),
        Err(error) => {
            tracing::error!(%error, release = %path.name, namespace = %path.namespace, "cannot read pods");
            Err(ApiError::unavailable(
                "pods_unavailable",
                format!(
                    "The pods of release {}/{} could not be read; its health is unknown",
                    path.namespace, path.name
                ),
                5,
            ))
        }
    }
}

/// Pending for longer than helm's timeout plus our margin, with no operation of
/// any replica on it (no local lock, no unexpired Lease):
/// the helm that set `pending-*` is gone.
async fn is_stuck(state: &AppState, path: &ReleasePath, release: &HelmRelease) -> bool {
    let (namespace, name) = (path.namespace.as_str(), path.name.as_str());
    release.is_stale_pending(stale_after(state))
        && !state.locks.is_held_anywhere(namespace, name).await
}

/// True when installs and upgrades are rendered with `helm template` before
/// they run (Helm 3 with confinement), so before helm itself looks at the
/// release.
fn renders_first(state: &AppState) -> bool {
    state.config.confine_charts && !state.helm.confines_in_run()
}

/// helm refuses an upgrade of a release that is missing, or whose latest
/// revision is `pending-*`, before it changes anything; only then is the
/// release read: 404 when it is missing, and a stale pending revision is
/// recovered and the upgrade tried once more. Anything else is `refused`.
async fn retry_if_recovered<Retry, Fut>(
    state: &AppState,
    path: &ReleasePath,
    refused: HelmError,
    retry: Retry,
) -> Result<HelmRelease, ApiError>
where
    Retry: FnOnce() -> Fut,
    Fut: Future<Output = Result<HelmRelease, HelmError>>,
{
    let HelmError::Failed { kind, .. } = &refused else {
        return Err(refused.into());
    };
    let kind = *kind;
    if !matches!(
        kind,
        FailureKind::NoDeployedRelease
            | FailureKind::ReleaseNotFound
            | FailureKind::OperationInProgress
    ) {
        return Err(refused.into());
    }
    let latest = require_release(state, path).await?;
    if kind == FailureKind::OperationInProgress
        && recover_if_stuck(state, &path.namespace, &path.name, &latest).await?
    {
        return Ok(retry().await?);
    }
    Err(refused.into())
}

/// Confinement of an install or upgrade (unless `CONFINE_CHARTS=false`).
/// With Helm 4 the helm run checks itself: the rules it needs are returned.
/// With Helm 3 the chart is rendered first with `helm template` (real values,
/// hooks included) and refused here (400, listing the objects) when it would
/// escape its namespace or create cluster-scoped objects that are not allowed.
async fn check_confinement(
    state: &AppState,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    chart: ChartArgs<'_>,
    is_upgrade: bool,
    values: &Map<String, Value>,
) -> Result<Option<Rules>, ApiError> {
    if !state.config.confine_charts {
        return Ok(None);
    }
    let scopes = state.scopes.get(&state.client).await?;
    let rules = Rules {
        namespace: namespace.as_str().to_owned(),
        allowed_cluster_kinds: state
            .config
            .allowed_cluster_kinds
            .iter()
            .map(|k| k.trim().to_owned())
            .filter(|k| !k.is_empty())
            .collect(),
        cluster_scoped: scopes.as_ref().clone(),
    };
    if state.helm.confines_in_run() {
        return Ok(Some(rules));
    }
    let rendered = state
        .helm
        .render(namespace, name, chart, is_upgrade, values)
        .await?;
    let violations = rules.check(&rendered);
    if violations.is_empty() {
        return Ok(None);
    }
    Err(HelmError::NotConfined {
        namespace: rules.namespace,
        violations,
    }
    .into())
}

async fn lock(
    state: &AppState,
    namespace: &TenantNamespace,
    name: &ReleaseName,
) -> Result<ReleaseGuard, ApiError> {
    let wait = Duration::from_secs(state.config.release_lock_wait);
    let started = std::time::Instant::now();
    let guard = state
        .locks
        .acquire(namespace.as_str(), name.as_str(), wait)
        .await;
    let outcome = match &guard {
        Ok(_) => "acquired",
        Err(LockError::Busy) => "timed_out",
        Err(_) => "error",
    };
    crate::metrics::lock_wait(outcome, started.elapsed());
    guard.map_err(|error| match error {
        LockError::Busy => ApiError::conflict(
            "operation_in_progress",
            format!("Another operation is in progress on {namespace}/{name}; try again when it has finished"),
        ),
        LockError::NamespaceMissing => ApiError::not_found(
            "namespace_not_found",
            format!("Namespace {namespace} does not exist; create it first (or send create_namespace: true)"),
        ),
        LockError::Kube(error) => error.into(),
    })
}

/// Runs `operation` holding the release's lock (and Lease), then gives them
/// back; the operation is a lazy future, so nothing runs before the lock is
/// held. The answer does not wait for the Lease's deletion (one API round
/// trip): the local lock is held until it is done, so the next operation
/// on this release in this process still waits for it.
pub(super) async fn locked<T>(
    state: &AppState,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    operation: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let guard = lock(state, namespace, name).await?;
    let outcome = operation.await;
    state.locks.release_in_background(guard);
    outcome
}

/// How old a `pending-*` revision must be before we call it abandoned: no
/// helm of ours runs longer than its timeout plus our deadline margin.
fn stale_after(state: &AppState) -> Duration {
    state.helm.runner().helm_timeout() + Duration::from_secs(state.config.helm_deadline_margin)
}

/// Marks an abandoned `pending-*` latest revision failed, as Flux's
/// helm-controller does, so the next helm operation can proceed. Called with
/// the release's lock and Lease held, so no replica runs helm on it, and with
/// the latest revision the caller has just read under them.
async fn recover_if_stuck(
    state: &AppState,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    latest: &HelmRelease,
) -> Result<bool, ApiError> {
    let recovered = state
        .helm
        .recover_stale_pending(namespace, name, latest, stale_after(state))
        .await?;
    let Some(revision) = recovered else {
        return Ok(false);
    };
    tracing::warn!(%namespace, release = %name, revision, "recovered a stuck release: marked its pending revision failed");
    Ok(true)
}

/// Where a read was answered from, sent as `X-Served-From: cache` or `api`
/// (the watch-fed index, or a Kubernetes API call), so tests and
/// benchmarks can tell the two paths apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServedFrom {
    Cache,
    Api,
}

impl IntoResponseParts for ServedFrom {
    type Error = Infallible;

    fn into_response_parts(self, mut parts: ResponseParts) -> Result<ResponseParts, Infallible> {
        let value = match self {
            Self::Cache => "cache",
            Self::Api => "api",
        };
        parts
            .headers_mut()
            .insert(SERVED_FROM, HeaderValue::from_static(value));
        Ok(parts)
    }
}

/// The header naming a read's source.
pub const SERVED_FROM: HeaderName = HeaderName::from_static("x-served-from");

/// The newest revision of a release: from the read cache when it can
/// answer, else from storage (which then starts indexing the namespace).
async fn read_latest(
    state: &AppState,
    path: &ReleasePath,
) -> Result<(ServedFrom, Arc<CachedRevision>), ApiError> {
    let (namespace, name) = (path.namespace.as_str(), path.name.as_str());
    let (from, latest) = match state.cache.latest(namespace, name).await {
        Some(cached) => (ServedFrom::Cache, cached?),
        None => {
            let latest = state.helm.latest(&path.namespace, &path.name).await?;
            if latest.is_some() {
                state.cache.warm(namespace);
            }
            let latest = latest.map(|release| Arc::new(CachedRevision::new(release)));
            (ServedFrom::Api, latest)
        }
    };
    let latest = latest.ok_or_else(|| release_not_found(path))?;
    Ok((from, latest))
}

/// Tells the read cache what a write left behind, so this replica's next
/// reads of the release show it (read-your-writes).
fn expect_after_write<T>(
    state: &AppState,
    path: (&TenantNamespace, &ReleaseName),
    outcome: &Result<T, ApiError>,
    produced: impl FnOnce(&T) -> Expectation,
) {
    let expectation = match outcome {
        Ok(done) => produced(done),
        Err(_) => Expectation::Unknown,
    };
    state
        .cache
        .expect(path.0.as_str(), path.1.as_str(), expectation);
}

fn expect_release(release: &HelmRelease) -> Expectation {
    Expectation::Revision {
        revision: release.version,
        status: release.info.status.clone(),
    }
}

async fn require_release(state: &AppState, path: &ReleasePath) -> Result<HelmRelease, ApiError> {
    state
        .helm
        .latest(&path.namespace, &path.name)
        .await?
        .ok_or_else(|| release_not_found(path))
}

fn release_not_found(path: &ReleasePath) -> ApiError {
    ApiError::not_found(
        "release_not_found",
        format!("Release {}/{} not found", path.namespace, path.name),
    )
}

fn default_quota() -> Result<TenantQuota, ApiError> {
    Ok(TenantQuota {
        cpu: Quantity::parse("cpu_limit", &default_cpu())?,
        memory: Quantity::parse("memory_limit", &default_memory())?,
        storage: Quantity::parse("storage_limit", &default_storage())?,
    })
}

/// Values must be an object nested at most [`MAX_VALUES_DEPTH`] deep.
fn checked_values(values: Option<Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    let values = values.unwrap_or_default();
    fn depth(value: &Value) -> usize {
        match value {
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let deepest = values.values().map(depth).max().unwrap_or(0);
    if deepest >= MAX_VALUES_DEPTH {
        return Err(ApiError::bad_request(
            "invalid_values",
            format!("values are nested deeper than {MAX_VALUES_DEPTH} levels"),
        ));
    }
    Ok(values)
}

/// Outcomes that carry a resulting revision, for the audit line.
trait HasRevision {
    fn revision(&self) -> u32;
}

impl HasRevision for HelmRelease {
    fn revision(&self) -> u32 {
        self.version
    }
}

impl HasRevision for (u32, HelmRelease) {
    fn revision(&self) -> u32 {
        self.1.version
    }
}

/// One audit event per mutating request: who (key id), what, where, outcome,
/// resulting revision. Never values or keys.
fn audit<T: HasRevision>(
    key: &KeyId,
    action: &'static str,
    namespace: &TenantNamespace,
    name: &ReleaseName,
    outcome: Result<T, ApiError>,
) -> Result<T, ApiError> {
    match &outcome {
        Ok(done) => tracing::info!(
            target: "audit", key = %key.0, action, namespace = %namespace, release = %name,
            outcome = "success", revision = done.revision(), "audit"
        ),
        Err(error) => tracing::info!(
            target: "audit", key = %key.0, action, namespace = %namespace, release = %name,
            outcome = "failure", status = error.status.as_u16(), error_type = %error.body.error_type, "audit"
        ),
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_depth_is_bounded() {
        let mut deep = serde_json::json!(1);
        for _ in 0..40 {
            deep = serde_json::json!({ "a": deep });
        }
        let map = deep.as_object().cloned();
        assert_eq!(
            checked_values(map).unwrap_err().body.error_type,
            "invalid_values"
        );
        let shallow = serde_json::json!({"a": {"b": [1, {"c": true}]}})
            .as_object()
            .cloned();
        assert!(checked_values(shallow).is_ok());
        assert!(checked_values(None).unwrap().is_empty());
    }
}
