//! Prometheus metrics: one recorder per process (the `metrics` facade with
//! `metrics-exporter-prometheus`), rendered by `GET /metrics` on the main
//! port, without auth (it holds no tenant data: route templates, helm
//! operation kinds, counts and durations only).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `http_requests_total` | counter | `method`, `route` (template), `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `helm_operations_total` | counter | `operation` (install, upgrade, …), `outcome` (`success`, `failure`, `timeout`, `cancelled`) |
//! | `helm_operation_duration_seconds` | histogram | `operation`, `outcome` |
//! | `helm_processes_in_flight` | gauge | – |
//! | `helm_tenant_milliseconds_total` | counter | `namespace` (bounded, see below) – helm run time per tenant |
//! | `helm_tenant_refusals_total` | counter | `namespace`, `reason` (`busy`: no slot in time, 503; `render_time`, `memory`, `cpu`, `memory_budget`, `expansion`, `size`, `crashed`: 400 `chart_too_complex`) |
//! | `helm_slots_waiting` | gauge | – (requests waiting for a helm slot) |
//! | `helm_memory_bytes` | gauge | – (resident memory of all helm process groups, as last sampled) |
//! | `release_lock_waits_total` | counter | `outcome` (`acquired`, `timed_out` = a 409, `error`) |
//! | `release_lock_wait_seconds` | histogram | `outcome` |
//! | `releases_recovered_total` | counter | `trigger` (`own_helm`: this replica's helm ended abnormally; `abandoned`: a Lease left without a live holder, or a revision pending too long; `shutdown`) |
//! | `kubernetes_api_errors_total` | counter | `kind` (`unreachable`, `conflict`, `forbidden`, `not_found`, `other`) |
//! | `read_cache_lookups_total` | counter | `outcome` (`hit`: answered from the watch-fed index, `miss`: read from the API) |
//! | `read_cache_namespaces` | gauge | – (tenant namespaces with records or pods in the read cache) |
//! | `read_cache_releases`, `read_cache_revisions`, `read_cache_pods` | gauge | – (what the cluster-wide read cache holds) |
//! | `helm_egress_refused_total` | counter | – (helm tried a host that is no allowed chart source) |
//! | `api_errors_total` | counter | `error_type` (one of the API's error codes, `crate::error::Code`) |
//! | `cloudflare_requests_total` | counter | `operation` (`get_config`, `put_config`, `create_dns`, …), `outcome` (`success`, `client_error`, `server_error`, `rate_limited`, `timeout`, `unreachable`, `unreadable`) |
//! | `cloudflare_request_duration_seconds` | histogram | `operation`, `outcome` (one sample per attempt; retries count again) |
//!
//! Labels only ever hold bounded, non-secret values: never a release name,
//! value or key. The one exception is the tenant namespace on the two
//! per-tenant helm metrics, which is the point of them (who uses the helm
//! slots, who is refused): the first `HELM_METRICS_TENANTS` namespaces seen
//! get their own label, every later one is counted as `other`, so a flood
//! of namespaces cannot grow the exposition without bound.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const HTTP_REQUESTS: &str = "http_requests_total";
const HTTP_DURATION: &str = "http_request_duration_seconds";
const HELM_OPERATIONS: &str = "helm_operations_total";
const HELM_DURATION: &str = "helm_operation_duration_seconds";
const HELM_IN_FLIGHT: &str = "helm_processes_in_flight";
const LOCK_WAITS: &str = "release_lock_waits_total";
const LOCK_WAIT_DURATION: &str = "release_lock_wait_seconds";
const KUBE_ERRORS: &str = "kubernetes_api_errors_total";
const KUBE_THROTTLED: &str = "kubernetes_api_throttled_total";
const RECOVERED: &str = "releases_recovered_total";
const CACHE_LOOKUPS: &str = "read_cache_lookups_total";
const CACHE_NAMESPACES: &str = "read_cache_namespaces";
const CACHE_RELEASES: &str = "read_cache_releases";
const CACHE_REVISIONS: &str = "read_cache_revisions";
const CACHE_PODS: &str = "read_cache_pods";
const API_ERRORS: &str = "api_errors_total";
const EGRESS_REFUSED: &str = "helm_egress_refused_total";
const CLOUDFLARE_REQUESTS: &str = "cloudflare_requests_total";
const CLOUDFLARE_DURATION: &str = "cloudflare_request_duration_seconds";
const CHART_FETCHES: &str = "chart_fetches_total";
const CHART_FETCH_DURATION: &str = "chart_fetch_duration_seconds";
const HELM_TENANT_TIME: &str = "helm_tenant_milliseconds_total";
const HELM_TENANT_REFUSALS: &str = "helm_tenant_refusals_total";
const HELM_SLOTS_WAITING: &str = "helm_slots_waiting";
const HELM_MEMORY: &str = "helm_memory_bytes";

/// Seconds; HTTP requests range from a storage read to a 120 s install.
const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Seconds; helm runs take from 0.1 s (`version`) to HELM_TIMEOUT.
const HELM_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// Seconds; one Cloudflare call is bounded by CLOUDFLARE_TIMEOUT.
const CLOUDFLARE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0,
];
/// Seconds; a chart fetch is a cache hit (ms) or downloads, bounded by
/// CHART_FETCH_TIMEOUT.
const CHART_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];
/// Seconds; the lock wait is bounded by RELEASE_LOCK_WAIT.
const LOCK_BUCKETS: &[f64] = &[0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// How often histogram samples are folded in when nobody scrapes.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide recorder's handle; installs the recorder on first use.
/// Safe to call any number of times (tests start several operators in one
/// process): the recorder is installed once, later calls share it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = buckets(PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(handle) => handle,
            Err(error) => {
                // Another recorder owns the process: serve an empty document
                // rather than fail to start.
                tracing::warn!(%error, "metrics recorder not installed; /metrics stays empty");
                buckets(PrometheusBuilder::new()).build_recorder().handle()
            }
        };
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_PERIOD);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    handle().render()
}

fn buckets(builder: PrometheusBuilder) -> PrometheusBuilder {
    let with = |builder: PrometheusBuilder, name: &str, values: &[f64]| {
        builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), values)
            .expect("bucket lists are not empty")
    };
    let builder = with(builder, HTTP_DURATION, HTTP_BUCKETS);
    let builder = with(builder, HELM_DURATION, HELM_BUCKETS);
    let builder = with(builder, CLOUDFLARE_DURATION, CLOUDFLARE_BUCKETS);
    let builder = with(builder, CHART_FETCH_DURATION, CHART_BUCKETS);
    with(builder, LOCK_WAIT_DURATION, LOCK_BUCKETS)
}

/// The HTTP and helm-operation metrics, then [`describe_cluster`].
fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests answered");
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "HTTP request latency"
    );
    describe_counter!(
        HELM_OPERATIONS,
        "helm processes run, by operation and outcome"
    );
    describe_histogram!(
        HELM_DURATION,
        metrics::Unit::Seconds,
        "helm run time (queue wait for a slot excluded)"
    );
    describe_gauge!(HELM_IN_FLIGHT, "helm processes running now");
    describe_counter!(
        LOCK_WAITS,
        "waits for a release's lock; timed_out ones were answered 409"
    );
    describe_histogram!(
        LOCK_WAIT_DURATION,
        metrics::Unit::Seconds,
        "time spent waiting for a release's lock"
    );
    describe_cluster();
}

/// The metrics of the cluster side: Kubernetes, the read cache, helm's
/// slots and limits, Cloudflare, chart fetches.
fn describe_cluster() {
    describe_counter!(KUBE_ERRORS, "failed Kubernetes API calls, by kind");
    describe_counter!(
        KUBE_THROTTLED,
        "Kubernetes API requests resent after a 429 (the API server at its limit)"
    );
    describe_counter!(
        RECOVERED,
        "pending-* revisions whose helm was gone, marked failed, by trigger"
    );
    describe_counter!(
        CACHE_LOOKUPS,
        "release reads answered from the watch-fed index (hit) or the API (miss)"
    );
    describe_gauge!(CACHE_NAMESPACES, "namespaces in the read cache");
    describe_gauge!(CACHE_RELEASES, "releases in the cluster-wide read cache");
    describe_gauge!(
        CACHE_REVISIONS,
        "revisions (summaries) in the cluster-wide read cache"
    );
    describe_gauge!(
        CACHE_PODS,
        "pods of tenant namespaces in the cluster-wide read cache"
    );
    describe_counter!(
        CLOUDFLARE_REQUESTS,
        "Cloudflare API calls (each attempt), by operation and outcome"
    );
    describe_histogram!(
        CLOUDFLARE_DURATION,
        metrics::Unit::Seconds,
        "Cloudflare API call latency (each attempt)"
    );
    describe_counter!(
        EGRESS_REFUSED,
        "outbound chart requests refused (a host that is no allowed chart source), by the chart fetcher or helm's egress guard"
    );
    describe_counter!(
        CHART_FETCHES,
        "charts fetched for helm, by outcome (ok, refused, not_found, not_allowed, failed)"
    );
    describe_histogram!(
        CHART_FETCH_DURATION,
        metrics::Unit::Seconds,
        "time to have a chart ready for helm (a cache hit included)"
    );
    describe_counter!(
        API_ERRORS,
        "error answers, by error_type (the API's error code)"
    );
    describe_counter!(
        HELM_TENANT_TIME,
        metrics::Unit::Milliseconds,
        "helm run time, by tenant namespace (the first HELM_METRICS_TENANTS, then other)"
    );
    describe_counter!(
        HELM_TENANT_REFUSALS,
        "helm runs refused, by tenant namespace and reason (busy, or the limit the chart went over)"
    );
    describe_gauge!(HELM_SLOTS_WAITING, "requests waiting for a helm slot");
    describe_gauge!(
        HELM_MEMORY,
        metrics::Unit::Bytes,
        "resident memory of all helm process groups, as last sampled"
    );
}

/// Most tenant namespaces with a label of their own (`HELM_METRICS_TENANTS`).
static TENANT_LABEL_CAP: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(50);
static TENANT_LABELS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Sets how many tenant namespaces get a label of their own (0: none).
pub fn set_tenant_label_cap(cap: usize) {
    TENANT_LABEL_CAP.store(cap, std::sync::atomic::Ordering::Relaxed);
}

/// The `namespace` label of a tenant: its name while fewer than the cap
/// have one, else `other`; `none` for runs about no namespace.
fn tenant_label(namespace: &str) -> String {
    if namespace.is_empty() {
        return "none".into();
    }
    let cap = TENANT_LABEL_CAP.load(std::sync::atomic::Ordering::Relaxed);
    let mut labels = TENANT_LABELS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    label_among(&mut labels, cap, namespace)
}

/// `namespace` when it is one of `labels`, or becomes one while there are
/// fewer than `cap`; else `other`.
fn label_among(labels: &mut Vec<String>, cap: usize, namespace: &str) -> String {
    if labels.iter().any(|label| label == namespace) {
        return namespace.to_owned();
    }
    if labels.len() < cap {
        labels.push(namespace.to_owned());
        return namespace.to_owned();
    }
    "other".into()
}

/// Adds a helm run's time to its tenant's total (in milliseconds: counters
/// are whole numbers, and most runs take a second or two).
pub fn helm_tenant_seconds(namespace: &str, elapsed: Duration) {
    let millis = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
    counter!(HELM_TENANT_TIME, "namespace" => tenant_label(namespace)).increment(millis);
}

/// Counts a helm run refused for a tenant: `busy` or a limit's label.
pub fn helm_refused(namespace: &str, reason: &'static str) {
    counter!(HELM_TENANT_REFUSALS, "namespace" => tenant_label(namespace), "reason" => reason)
        .increment(1);
}

/// Sets the number of requests waiting for a helm slot.
pub fn helm_slots_waiting(count: usize) {
    gauge!(HELM_SLOTS_WAITING).set(count as f64);
}

/// Sets the sampled resident memory of all helm process groups.
pub fn helm_memory(bytes: u64) {
    gauge!(HELM_MEMORY).set(bytes as f64);
}

/// Records one answered HTTP request; `route` is the route template.
pub fn http_request(method: &str, route: &str, status: u16, elapsed: Duration) {
    // Clients can send any method token: keep the label bounded.
    let method = match method {
        "GET" | "POST" | "PUT" | "PATCH" | "DELETE" | "HEAD" | "OPTIONS" => method,
        _ => "other",
    };
    let labels = [
        ("method", method.to_owned()),
        ("route", route.to_owned()),
        ("status", status.to_string()),
    ];
    counter!(HTTP_REQUESTS, &labels).increment(1);
    histogram!(HTTP_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Records one finished helm run (queue wait excluded); `outcome` is
/// `success`, `failure`, `timeout` or `cancelled`.
pub fn helm_operation(operation: &'static str, outcome: &'static str, elapsed: Duration) {
    let labels = [("operation", operation), ("outcome", outcome)];
    counter!(HELM_OPERATIONS, &labels).increment(1);
    histogram!(HELM_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts a helm process as running while it lives.
pub struct HelmInFlight(());

impl HelmInFlight {
    pub fn start() -> Self {
        gauge!(HELM_IN_FLIGHT).increment(1.0);
        Self(())
    }
}

impl Drop for HelmInFlight {
    fn drop(&mut self) {
        gauge!(HELM_IN_FLIGHT).decrement(1.0);
    }
}

/// Records a wait for a release lock: `acquired`, `timed_out` (answered
/// 409) or `error` (the Lease could not be read or written).
pub fn lock_wait(outcome: &'static str, waited: Duration) {
    counter!(LOCK_WAITS, "outcome" => outcome).increment(1);
    histogram!(LOCK_WAIT_DURATION, "outcome" => outcome).record(waited.as_secs_f64());
}

/// Counts a `pending-*` revision marked failed because its helm was gone;
/// `trigger` comes from a fixed list in `crate::releases::recovery`.
pub fn release_recovered(trigger: &'static str) {
    counter!(RECOVERED, "trigger" => trigger).increment(1);
}

/// Records a release read answered from the read cache (`hit`) or not.
pub fn read_cache_lookup(hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    counter!(CACHE_LOOKUPS, "outcome" => outcome).increment(1);
}

/// Sets the number of namespaces the read cache indexes.
pub fn read_cache_namespaces(count: usize) {
    gauge!(CACHE_NAMESPACES).set(count as f64);
}

/// Sets what the cluster-wide read cache holds.
pub fn read_cache_contents(releases: usize, revisions: usize, pods: usize) {
    gauge!(CACHE_RELEASES).set(releases as f64);
    gauge!(CACHE_REVISIONS).set(revisions as f64);
    gauge!(CACHE_PODS).set(pods as f64);
}

/// Counts a request (of the chart fetcher, or of helm through its guard)
/// to a host that is no allowed chart source.
pub fn egress_refused() {
    counter!(EGRESS_REFUSED).increment(1);
}

/// Records one chart fetch; `outcome` is from a fixed list in
/// `crate::charts`.
pub fn chart_fetch(outcome: &'static str, elapsed: Duration) {
    counter!(CHART_FETCHES, "outcome" => outcome).increment(1);
    histogram!(CHART_FETCH_DURATION, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// Records one Cloudflare API attempt; `operation` and `outcome` come from
/// fixed lists in `crate::exposure::cloudflare`.
pub fn cloudflare_request(operation: &'static str, outcome: &'static str, elapsed: Duration) {
    let labels = [("operation", operation), ("outcome", outcome)];
    counter!(CLOUDFLARE_REQUESTS, &labels).increment(1);
    histogram!(CLOUDFLARE_DURATION, &labels).record(elapsed.as_secs_f64());
}

/// Counts an error answer by its code (`crate::error::Code::as_str`).
pub fn api_error(code: &'static str) {
    counter!(API_ERRORS, "error_type" => code).increment(1);
}

/// Records a failed Kubernetes API call.
pub fn kube_api_error(error: &kube::Error) {
    counter!(KUBE_ERRORS, "kind" => kube_error_kind(error)).increment(1);
}

/// Records a Kubernetes API request resent after a 429.
pub fn kube_throttled() {
    counter!(KUBE_THROTTLED).increment(1);
}

/// A bounded label for a Kubernetes API failure.
pub fn kube_error_kind(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match status.code {
            401 | 403 => "forbidden",
            404 => "not_found",
            409 => "conflict",
            422 => "invalid",
            429 => "throttled",
            500..=599 => "server_error",
            _ => "other",
        },
        _ => "unreachable",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_metrics_are_rendered_with_histogram_buckets() {
        // Samples recorded before the recorder is installed are lost.
        handle();
        http_request("GET", "/api/test-route", 200, Duration::from_millis(3));
        helm_operation("test-op", "success", Duration::from_millis(1500));
        api_error("release_exists");
        lock_wait("timed_out", Duration::from_secs(2));
        let in_flight = HelmInFlight::start();
        let text = render();
        drop(in_flight);
        assert!(
            text.contains(
                r#"http_requests_total{method="GET",route="/api/test-route",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"helm_operation_duration_seconds_bucket{operation="test-op",outcome="success",le="2.5"} 1"#
        ), "{text}");
        assert!(text.contains(r#"release_lock_waits_total{outcome="timed_out"} 1"#));
        assert!(text.contains(r#"api_errors_total{error_type="release_exists"}"#));
        assert!(text.contains("# TYPE helm_processes_in_flight gauge"));
        // A second call reuses the installed recorder.
        assert!(std::ptr::eq(handle(), handle()));
    }

    #[test]
    fn tenant_labels_are_bounded() {
        let mut labels = Vec::new();
        assert_eq!(label_among(&mut labels, 2, "paas-ws-a"), "paas-ws-a");
        assert_eq!(label_among(&mut labels, 2, "paas-ws-b"), "paas-ws-b");
        assert_eq!(label_among(&mut labels, 2, "paas-ws-c"), "other");
        assert_eq!(label_among(&mut labels, 2, "paas-ws-a"), "paas-ws-a");
        assert_eq!(label_among(&mut Vec::new(), 0, "paas-ws-a"), "other");
        assert_eq!(tenant_label(""), "none");
        handle();
        helm_refused("paas-ws-metrics-test", "memory");
        helm_tenant_seconds("paas-ws-metrics-test", Duration::from_millis(1500));
        let text = render();
        assert!(
            text.contains(
                r#"helm_tenant_refusals_total{namespace="paas-ws-metrics-test",reason="memory"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"helm_tenant_milliseconds_total{namespace="paas-ws-metrics-test"} 1500"#
            )
        );
    }

    #[test]
    fn kube_errors_get_bounded_labels() {
        let status = |code| {
            kube::Error::Api(
                kube::core::Status::failure("x", "y")
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(kube_error_kind(&status(409)), "conflict");
        assert_eq!(kube_error_kind(&status(403)), "forbidden");
        assert_eq!(kube_error_kind(&status(503)), "server_error");
    }
}
