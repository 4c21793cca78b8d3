//! End-to-end: public exposure and tunnels against the Cloudflare API
//! double of `scripts/testenv up` (its coordinates come from the env file,
//! `CLOUDFLARE_*`), with real operators, real helm and the real control
//! plane. Each test has its own random namespace and subdomains. The
//! double's state is shared: tests that inject faults or edit its
//! configuration directly hold [`DOUBLE`] exclusively (and clear the faults
//! after them); the others share it.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    Major, Operator, OperatorProcess, assert_error, call_at, env, free_port, helm_binary,
    oci_chart, random_release, scratch_dir,
};

/// Tests that change the double for everyone (faults, direct edits) write;
/// the others read.
pub(crate) static DOUBLE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// The Cloudflare API double, as the tests check and arrange it.
pub(crate) struct Double {
    http: reqwest::Client,
    pub(crate) api: String,
    control: String,
    pub(crate) token: String,
    pub(crate) account: String,
    pub(crate) tunnel: String,
    pub(crate) zone: String,
    pub(crate) domain: String,
}

impl Double {
    pub(crate) fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            api: env("CLOUDFLARE_API_BASE"),
            control: env("CLOUDFLARE_DOUBLE"),
            token: env("CLOUDFLARE_API_TOKEN"),
            account: env("CLOUDFLARE_ACCOUNT_ID"),
            tunnel: env("CLOUDFLARE_TUNNEL_ID"),
            zone: env("CLOUDFLARE_ZONE_ID"),
            domain: env("CLOUDFLARE_DOMAIN"),
        }
    }

    pub(crate) async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("double answers");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn control(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.control));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("double answers");
        assert!(response.status().is_success(), "{response:?}");
        response.json().await.unwrap_or(Value::Null)
    }

    /// The shared tunnel's configuration (`config`, `version`).
    pub(crate) async fn config(&self) -> Value {
        let (status, body) = self
            .api(
                Method::GET,
                &format!(
                    "/accounts/{}/cfd_tunnel/{}/configurations",
                    self.account, self.tunnel
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"].clone()
    }

    pub(crate) async fn rules(&self) -> Vec<Value> {
        self.config().await["config"]["ingress"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub(crate) async fn rule_for(&self, hostname: &str) -> Option<Value> {
        self.rules()
            .await
            .into_iter()
            .find(|r| r["hostname"] == hostname)
    }

    /// DNS records at `name` (a FQDN).
    pub(crate) async fn dns(&self, name: &str) -> Vec<Value> {
        let (status, body) = self
            .api(
                Method::GET,
                &format!("/zones/{}/dns_records?name={name}", self.zone),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["result"].as_array().cloned().unwrap_or_default()
    }

    async fn fault(&self, fault: Value) {
        self.control(Method::POST, "/faults", Some(fault)).await;
    }

    async fn clear_faults(&self) {
        self.control(Method::DELETE, "/faults", None).await;
    }

    /// The catch-all is last and the foreign rule is there, unchanged.
    pub(crate) async fn assert_foreign_rule_and_catch_all_kept(&self) {
        let config = self.config().await;
        let rules = config["config"]["ingress"].as_array().expect("rules");
        let last = rules.last().expect("a catch-all");
        assert!(last.get("hostname").is_none(), "catch-all last: {config}");
        assert_eq!(last["service"], "http_status:404");
        let zone_name = self.zone_name();
        let foreign = rules
            .iter()
            .filter(|r| r["hostname"] == format!("foreign.{zone_name}"))
            .collect::<Vec<_>>();
        assert_eq!(
            foreign,
            [
                &json!({"hostname": format!("foreign.{zone_name}"), "service": "http://foreign.example:80"})
            ],
            "{config}"
        );
        assert_eq!(
            config["config"]["warp-routing"],
            json!({"enabled": false}),
            "other fields kept"
        );
    }

    pub(crate) fn hostname(&self, subdomain: &str) -> String {
        format!("{subdomain}.{}", self.domain)
    }

    /// The zone the exposure domain lies in (`apps.example.com` → `example.com`).
    pub(crate) fn zone_name(&self) -> &str {
        self.domain.split_once('.').map_or("", |(_, z)| z)
    }

    /// A fresh dedicated tunnel's name and its hostname in the zone.
    fn new_tunnel(&self) -> (String, String) {
        let name = format!("home-{:08x}", rand::rng().random::<u32>());
        let hostname = format!("{name}.{}", self.zone_name());
        (name, hostname)
    }
}

/// Clears the double's faults when dropped, so a test that fails half way
/// leaves none behind for the next.
struct ClearFaults(String);

impl Drop for ClearFaults {
    fn drop(&mut self) {
        let url = format!("{}/faults", self.0);
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let _ = reqwest::Client::new().delete(url).send().await;
            });
        })
        .join();
    }
}

/// A random subdomain.
fn subdomain() -> String {
    format!("e2e-{:08x}", rand::rng().random::<u32>())
}

/// The settings of an operator routing through the double's shared tunnel.
pub(crate) fn cloudflare_args(double: &Double) -> Vec<String> {
    [
        ("--exposure-backend", "cloudflare"),
        ("--cloudflare-api-base", double.api.as_str()),
        ("--cloudflare-api-token", double.token.as_str()),
        ("--cloudflare-account-id", double.account.as_str()),
        ("--cloudflare-tunnel-id", double.tunnel.as_str()),
        ("--cloudflare-zone-id", double.zone.as_str()),
        ("--cloudflare-domain", double.domain.as_str()),
    ]
    .into_iter()
    .flat_map(|(flag, value)| [flag.to_owned(), value.to_owned()])
    .collect()
}

async fn start(double: &Double, extra: &[&str]) -> Operator {
    let mut args = cloudflare_args(double);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Operator::start(Major::Helm4, &args).await
}

fn install_body(namespace: &str, name: &str, expose: Value) -> Value {
    json!({"namespace": namespace, "name": name, "chart": oci_chart("web"), "version": "0.1.0",
           "values": {"replicaCount": 1}, "create_namespace": true, "expose": expose})
}

/// Installs the `web` chart exposed at `subdomain`; returns status and body.
async fn install(
    op: &Operator,
    namespace: &str,
    name: &str,
    subdomain: &str,
) -> (StatusCode, Value) {
    op.call(
        Method::POST,
        "/api/releases",
        Some(install_body(
            namespace,
            name,
            json!({"enabled": true, "subdomain": subdomain}),
        )),
    )
    .await
}

/// The route record of a subdomain (admin reads it).
pub(crate) async fn record(op: &Operator, subdomain: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(op.kube.clone(), "paas-system")
        .get_opt(&format!("paas-route-{subdomain}"))
        .await
        .expect("read record")
}

/// Deletes the namespace through the operator (its routes go too).
async fn delete_tenant(op: &Operator, namespace: &str) {
    let (status, body) = op
        .call(
            Method::DELETE,
            &format!("/api/namespaces/{namespace}"),
            None,
        )
        .await;
    assert!(
        status == StatusCode::ACCEPTED || status == StatusCode::NOT_FOUND,
        "{status} {body}"
    );
}

fn service_url(name: &str, namespace: &str) -> String {
    format!("http://{name}-web.{namespace}.svc.cluster.local:80")
}

/// Asserts the route of a release is in place at the double: the rule, a
/// proxied CNAME named by its FQDN with automatic TTL, and the record.
async fn assert_routed(op: &Operator, double: &Double, subdomain: &str, service: &str) {
    let hostname = double.hostname(subdomain);
    let rule = double.rule_for(&hostname).await;
    assert_eq!(
        rule,
        Some(json!({"hostname": hostname, "service": service})),
        "rule of {hostname}"
    );
    let records = double.dns(&hostname).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let cname = &records[0];
    assert_eq!(cname["type"], "CNAME");
    assert_eq!(cname["name"], hostname.as_str());
    assert_eq!(
        cname["content"],
        format!("{}.cfargotunnel.com", double.tunnel)
    );
    assert_eq!(cname["proxied"], true);
    assert_eq!(cname["ttl"], 1);
    let data = record(op, subdomain)
        .await
        .and_then(|map| map.data)
        .expect("route record");
    assert_eq!(data["applied"], "true");
    assert_eq!(data["hostname"], hostname);
    assert_eq!(
        data["dns_record_id"],
        cname["id"].as_str().unwrap_or_default()
    );
}

/// Asserts nothing of a route is left: no rule, no CNAME, no record.
async fn assert_unrouted(op: &Operator, double: &Double, subdomain: &str) {
    let hostname = double.hostname(subdomain);
    assert_eq!(
        double.rule_for(&hostname).await,
        None,
        "rule of {hostname} left"
    );
    assert!(
        double.dns(&hostname).await.is_empty(),
        "CNAME of {hostname} left"
    );
    assert!(
        record(op, subdomain).await.is_none(),
        "record of {subdomain} left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_exposes_and_uninstall_removes() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let namespace = op.tenant().await;

    // Given subdomain: route in the answer, at the double and on GET.
    let (name, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service = service_url(&name, &namespace);
    assert_eq!(
        body["route"],
        json!({"hostname": double.hostname(&sub), "service_url": service, "enabled": true})
    );
    assert_routed(&op, &double, &sub, &service).await;
    double.assert_foreign_rule_and_catch_all_kept().await;
    let path = format!("/api/releases/{namespace}/{name}");
    let (status, got) = op.call(Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["route"], body["route"]);
    let (_, status_body) = op.call(Method::GET, &format!("{path}/status"), None).await;
    assert_eq!(status_body["release"]["route"], body["route"]);
    let labels = record(&op, &sub)
        .await
        .and_then(|m| m.metadata.labels)
        .expect("labels");
    assert_eq!(labels["paas-operator/namespace"], namespace.as_str());
    assert_eq!(labels["paas-operator/release"], name.as_str());

    // Uninstall with ?subdomain=: everything of the route goes.
    let (status, body) = op
        .call(Method::DELETE, &format!("{path}?subdomain={sub}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_unrouted(&op, &double, &sub).await;

    // Default subdomain {release}-{namespace without the prefix}; uninstall
    // without ?subdomain=.
    let name = random_release();
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install_body(&namespace, &name, json!({"enabled": true}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let generated = format!("{name}-{}", namespace.trim_start_matches("paas-ws-"));
    assert_eq!(body["route"]["hostname"], double.hostname(&generated));
    assert_routed(&op, &double, &generated, &service_url(&name, &namespace)).await;
    let (status, _) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_unrouted(&op, &double, &generated).await;

    // Not exposed: route null; exposed with an invalid subdomain: 400 before
    // anything runs.
    let name = random_release();
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install_body(
                &namespace,
                &name,
                json!({"enabled": true, "subdomain": "a.b"}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_subdomain");
    let (status, _) = op
        .call(
            Method::GET,
            &format!("/api/releases/{namespace}/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was installed");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install_body(&namespace, &name, Value::Null)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["route"], Value::Null);
    delete_tenant(&op, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uninstall_of_an_already_gone_release_cleans_up() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let namespace = op.tenant().await;
    let (name, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_ne!(body["route"], Value::Null);
    // The release goes behind the operator's back.
    let output = tokio::process::Command::new(helm_binary(Major::Helm4))
        .args(["uninstall", &name, "-n", &namespace])
        .output()
        .await
        .expect("helm runs");
    assert!(output.status.success(), "{output:?}");
    // 404 as before, and the route is gone too.
    let (status, body) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "release_not_found");
    assert_unrouted(&op, &double, &sub).await;
    delete_tenant(&op, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_installs_through_two_replicas_lose_no_route() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let mut first = start(&double, &[]).await;
    let second = start(&double, &[]).await;
    let namespace = first.tenant().await;
    let releases: Vec<(String, String)> =
        (0..16).map(|_| (random_release(), subdomain())).collect();
    let version_before = double.config().await["version"].as_i64().unwrap_or(0);
    let started = Instant::now();
    let installs = releases.iter().enumerate().map(|(i, (name, sub))| {
        let op = if i % 2 == 0 { &first } else { &second };
        let namespace = namespace.clone();
        async move { install(op, &namespace, name, sub).await }
    });
    let answers = futures::future::join_all(installs).await;
    let took = started.elapsed();
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
        assert_ne!(body["route"], Value::Null, "{body}");
    }
    let rules = double.rules().await;
    for (name, sub) in &releases {
        let hostname = double.hostname(sub);
        assert_eq!(
            rules.iter().filter(|r| r["hostname"] == hostname).count(),
            1,
            "rule of {hostname}"
        );
        assert_routed(&first, &double, sub, &service_url(name, &namespace)).await;
    }
    double.assert_foreign_rule_and_catch_all_kept().await;
    let version_after = double.config().await["version"].as_i64().unwrap_or(0);
    eprintln!(
        "exposure: 16 exposed installs through 2 replicas in {took:?}; 16/16 rules and CNAMEs; configuration versions {version_before} -> {version_after} ({} writes)",
        version_after - version_before
    );

    // Uninstalled concurrently too: every route goes, nothing else.
    let started = Instant::now();
    let uninstalls = releases.iter().enumerate().map(|(i, (name, sub))| {
        let op = if i % 2 == 0 { &first } else { &second };
        let path = format!("/api/releases/{namespace}/{name}?subdomain={sub}");
        async move { op.call(Method::DELETE, &path, None).await }
    });
    for (status, body) in futures::future::join_all(uninstalls).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let took = started.elapsed();
    for (_, sub) in &releases {
        assert_unrouted(&first, &double, sub).await;
    }
    double.assert_foreign_rule_and_catch_all_kept().await;
    eprintln!(
        "exposure: 16 concurrent uninstalls through 2 replicas in {took:?}; 16/16 routes removed"
    );
    delete_tenant(&first, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_faults_leave_route_null_and_reconcile_repairs() {
    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    double.clear_faults().await;
    let _clear = ClearFaults(double.control.clone());
    let mut op = start(&double, &["--cloudflare-timeout", "1"]).await;
    let namespace = op.tenant().await;
    let config_path = "/configurations$";
    let cases = [
        (
            "5xx",
            json!({"method": "PUT", "path_regex": config_path, "status": 503, "count": 10}),
        ),
        (
            "429",
            json!({"method": "PUT", "path_regex": config_path, "status": 429, "count": 10, "retry_after_seconds": 1}),
        ),
        (
            "slow",
            json!({"method": "GET", "path_regex": config_path, "status": 0, "count": 10, "delay_ms": 1500}),
        ),
        (
            "dns 5xx",
            json!({"method": "POST", "path_regex": "/dns_records$", "status": 502, "count": 10}),
        ),
    ];
    let mut failed = Vec::new();
    for (case, fault) in cases {
        double.fault(fault).await;
        let (name, sub) = (random_release(), subdomain());
        let started = Instant::now();
        let (status, body) = install(&op, &namespace, &name, &sub).await;
        assert_eq!(status, StatusCode::CREATED, "{case}: {body}");
        assert_eq!(body["route"], Value::Null, "{case}: {body}");
        let data = record(&op, &sub)
            .await
            .and_then(|m| m.data)
            .expect("recorded");
        assert_eq!(data["applied"], "false", "{case}");
        eprintln!(
            "exposure: fault {case}: install 201, route null, in {:?}",
            started.elapsed()
        );
        double.clear_faults().await;
        failed.push((case, name, sub));
    }
    // Reconciliation repairs every one of them.
    let (status, report) = op.call(Method::POST, "/api/routes/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    for (case, name, sub) in &failed {
        let hostname = double.hostname(sub);
        assert!(
            report["applied"]["hostnames"]
                .as_array()
                .is_some_and(|h| h.contains(&json!(hostname))),
            "{case}: {report}"
        );
        assert_routed(&op, &double, sub, &service_url(name, &namespace)).await;
        let (_, got) = op
            .call(
                Method::GET,
                &format!("/api/releases/{namespace}/{name}"),
                None,
            )
            .await;
        assert_eq!(got["route"]["hostname"], hostname, "{case}");
    }
    eprintln!(
        "exposure: reconcile repaired {}",
        report["applied"]["count"]
    );

    // One 429 with Retry-After is waited out and retried: the route is made.
    double
        .fault(json!({"method": "PUT", "path_regex": config_path, "status": 429, "count": 1, "retry_after_seconds": 2}))
        .await;
    let (name, sub) = (random_release(), subdomain());
    let started = Instant::now();
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["route"]["hostname"], double.hostname(&sub), "{body}");
    assert!(
        took >= Duration::from_secs(2),
        "Retry-After honoured: {took:?}"
    );
    eprintln!("exposure: one 429 (Retry-After: 2) retried, route made, install in {took:?}");
    double.clear_faults().await;

    // The calls are counted by operation and outcome.
    let metrics = reqwest::get(format!("{}/metrics", op.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for expected in [
        r#"cloudflare_requests_total{operation="put_config",outcome="server_error"}"#,
        r#"cloudflare_requests_total{operation="put_config",outcome="rate_limited"}"#,
        r#"cloudflare_requests_total{operation="get_config",outcome="timeout"}"#,
        r#"cloudflare_requests_total{operation="put_config",outcome="success"}"#,
        "cloudflare_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(expected), "{expected} in /metrics");
    }
    delete_tenant(&op, &namespace).await;
    double.clear_faults().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostname_owned_by_another_is_refused() {
    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let namespace = op.tenant().await;
    let (first, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &first, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Another release: 409 before helm runs, nothing installed.
    let second = random_release();
    let (status, body) = install(&op, &namespace, &second, &sub).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_error(&body, "hostname_taken");
    let (status, _) = op
        .call(
            Method::GET,
            &format!("/api/releases/{namespace}/{second}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A route of no release: 409 too; the first release's route stays.
    let (status, body) = op
        .call(
            Method::POST,
            "/api/routes",
            Some(json!({"subdomain": sub, "service_url": "http://elsewhere.example:80"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_routed(&op, &double, &sub, &service_url(&first, &namespace)).await;

    // Someone else's rule for a hostname of our domain (written to the
    // double directly): refused, and their rule stays as it was.
    let theirs = subdomain();
    let hostname = double.hostname(&theirs);
    let mut config = double.config().await["config"].clone();
    let rules = config["ingress"].as_array_mut().expect("rules");
    rules.insert(
        0,
        json!({"hostname": hostname, "service": "http://theirs.example:80"}),
    );
    let path = format!(
        "/accounts/{}/cfd_tunnel/{}/configurations",
        double.account, double.tunnel
    );
    let (status, _) = double
        .api(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let name = random_release();
    let (status, body) = install(&op, &namespace, &name, &theirs).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["route"], Value::Null, "not overwritten: {body}");
    assert!(record(&op, &theirs).await.is_none(), "claim given up");
    let (status, body) = op
        .call(Method::DELETE, &format!("/api/routes/{theirs}"), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        double.rule_for(&hostname).await,
        Some(json!({"hostname": hostname, "service": "http://theirs.example:80"}))
    );
    // Put the double back as it was.
    let mut config = double.config().await["config"].clone();
    config["ingress"]
        .as_array_mut()
        .expect("rules")
        .retain(|r| r["hostname"] != hostname);
    double
        .api(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    delete_tenant(&op, &namespace).await;
    assert_unrouted(&op, &double, &sub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_api() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let op = start(&double, &[]).await;
    let (status, list) = op.call(Method::GET, "/api/routes", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["enabled"], true);
    assert_eq!(list["domain"], double.domain.as_str());
    let routes = list["routes"].as_array().expect("routes");
    assert_eq!(routes.last(), Some(&json!({"service": "http_status:404"})));
    assert!(
        routes
            .iter()
            .any(|r| r["service"] == "http://foreign.example:80")
    );

    let sub = subdomain();
    let hostname = double.hostname(&sub);
    let (status, created) = op
        .call(
            Method::POST,
            "/api/routes",
            Some(json!({"subdomain": sub, "service_url": "http://web.example:8080"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        created,
        json!({"hostname": hostname, "service": "http://web.example:8080", "path": null})
    );
    let (_, list) = op.call(Method::GET, "/api/routes", None).await;
    assert!(
        list["routes"]
            .as_array()
            .is_some_and(|r| r
                .contains(&json!({"hostname": hostname, "service": "http://web.example:8080"}))),
        "{list}"
    );
    assert_eq!(double.dns(&hostname).await.len(), 1);
    // Posted again: updated in place, with a path.
    let (status, created) = op
        .call(
            Method::POST,
            "/api/routes",
            Some(json!({"subdomain": sub, "service_url": "http://web.example:9090", "path": "^/api/"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let rules = double.rules().await;
    assert_eq!(
        rules
            .iter()
            .filter(|r| r["hostname"] == hostname)
            .collect::<Vec<_>>(),
        [&json!({"hostname": hostname, "service": "http://web.example:9090", "path": "^/api/"})]
    );
    // Deleted; deleting again is fine.
    for _ in 0..2 {
        let (status, body) = op
            .call(Method::DELETE, &format!("/api/routes/{sub}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["message"],
            format!("Route {hostname} deleted successfully")
        );
    }
    assert_eq!(double.rule_for(&hostname).await, None);
    assert!(double.dns(&hostname).await.is_empty());
    // Invalid input: 400 with our codes.
    for (body, code) in [
        (
            json!({"subdomain": "a.b", "service_url": "http://x:80"}),
            "invalid_subdomain",
        ),
        (
            json!({"subdomain": "ok", "service_url": "http://x/path"}),
            "invalid_service",
        ),
        (
            json!({"subdomain": "ok", "service_url": "ftp://x"}),
            "invalid_service",
        ),
    ] {
        let (status, answer) = op.call(Method::POST, "/api/routes", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_error(&answer, code);
    }
    let (status, answer) = op.call(Method::DELETE, "/api/routes/UP_case!", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    double.assert_foreign_rule_and_catch_all_kept().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exposure_off_answers_as_disabled() {
    crate::require_env!();
    let op = Operator::start(
        Major::Helm4,
        &["--exposure-backend", "none", "--cloudflare-api-token", ""],
    )
    .await;
    let (status, list) = op.call(Method::GET, "/api/routes", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["routes"], json!([]));
    assert_eq!(list["enabled"], false);
    let (status, body) = op
        .call(
            Method::POST,
            "/api/routes",
            Some(json!({"subdomain": "x", "service_url": "http://x:80"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "exposure_disabled");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/tunnels",
            Some(json!({"name": "n", "hostname": "h.paas.test"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "tunnels_disabled");
    assert_eq!(
        body["detail"],
        "Cloudflare API token and account ID are required for tunnel management"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedicated_tunnel_flow() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let op = start(&double, &[]).await;
    let (name, hostname) = double.new_tunnel();
    let (status, created) = op
        .call(
            Method::POST,
            "/api/tunnels",
            Some(json!({"name": name, "hostname": hostname})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["tunnel_id"].as_str().expect("tunnel_id").to_owned();
    assert_eq!(created["tunnel_name"], name.as_str());
    assert_eq!(created["hostname"], hostname.as_str());
    let token = created["tunnel_token"].as_str().expect("token").to_owned();
    assert!(!token.is_empty());
    assert!(created["dns_record_id"].is_string(), "{created}");
    // At the double: remotely managed, configured, CNAME'd.
    let (_, tunnel) = double
        .api(
            Method::GET,
            &format!("/accounts/{}/cfd_tunnel/{id}", double.account),
            None,
        )
        .await;
    assert_eq!(tunnel["result"]["config_src"], "cloudflare");
    let (_, config) = double
        .api(
            Method::GET,
            &format!(
                "/accounts/{}/cfd_tunnel/{id}/configurations",
                double.account
            ),
            None,
        )
        .await;
    assert_eq!(
        config["result"]["config"]["ingress"],
        json!([{"hostname": hostname, "service": "http://localhost:8123"}, {"service": "http_status:404"}])
    );
    let records = double.dns(&hostname).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["content"], format!("{id}.cfargotunnel.com"));
    // Token.
    let (status, body) = op
        .call(Method::GET, &format!("/api/tunnels/{id}/token"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"tunnel_id": id, "token": token}));
    // Status: not connected, then one live and one stale connection: only
    // the live one counts.
    let (status, body) = op
        .call(Method::GET, &format!("/api/tunnels/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connections"], json!([]));
    assert_eq!(body["name"], name.as_str());
    let live = double
        .control(
            Method::POST,
            &format!("/tunnels/{id}/connections"),
            Some(json!({"origin_ip": "198.51.100.7"})),
        )
        .await;
    double
        .control(
            Method::POST,
            &format!("/tunnels/{id}/connections"),
            Some(json!({"origin_ip": "198.51.100.8", "is_pending_reconnect": true})),
        )
        .await;
    let (_, body) = op
        .call(Method::GET, &format!("/api/tunnels/{id}"), None)
        .await;
    let connections = body["connections"].as_array().expect("connections");
    assert_eq!(connections.len(), 1, "{body}");
    assert_eq!(connections[0]["connector_id"], live["id"]);
    assert_eq!(connections[0]["type"], "");
    assert_eq!(connections[0]["origin_ip"], "198.51.100.7");
    assert!(connections[0]["opened_at"].is_string());
    assert_eq!(body["status"], "degraded");
    // Only stale: an empty list (not connected).
    double
        .control(
            Method::PATCH,
            &format!(
                "/tunnels/{id}/connections/{}",
                live["id"].as_str().unwrap_or_default()
            ),
            Some(json!({"is_pending_reconnect": true})),
        )
        .await;
    let (_, body) = op
        .call(Method::GET, &format!("/api/tunnels/{id}"), None)
        .await;
    assert_eq!(body["connections"], json!([]), "{body}");
    // Delete: CNAME and tunnel gone (connections too); again is fine.
    for _ in 0..2 {
        let (status, body) = op
            .call(Method::DELETE, &format!("/api/tunnels/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["message"], format!("Tunnel {id} deleted successfully"));
    }
    assert!(double.dns(&hostname).await.is_empty());
    let (_, tunnel) = double
        .api(
            Method::GET,
            &format!("/accounts/{}/cfd_tunnel/{id}", double.account),
            None,
        )
        .await;
    assert!(tunnel["result"]["deleted_at"].is_string());
    let (status, body) = op
        .call(Method::GET, &format!("/api/tunnels/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "tunnel_not_found");
    // Input checked before Cloudflare is called.
    let (status, body) = op.call(Method::GET, "/api/tunnels/not-a-uuid", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/tunnels",
            Some(json!({"name": "x", "hostname": "nodot"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "invalid_hostname");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_tunnel_creation_leaves_nothing() {
    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    double.clear_faults().await;
    let _clear = ClearFaults(double.control.clone());
    let op = start(&double, &[]).await;
    for (step, fault) in [
        (
            "configuration",
            json!({"method": "PUT", "path_regex": "/cfd_tunnel/[^/]+/configurations$", "status": 400, "count": 1}),
        ),
        (
            "token",
            json!({"method": "GET", "path_regex": "/cfd_tunnel/[^/]+/token$", "status": 500, "count": 10}),
        ),
    ] {
        double.fault(fault).await;
        let (name, hostname) = double.new_tunnel();
        let (status, body) = op
            .call(
                Method::POST,
                "/api/tunnels",
                Some(json!({"name": name, "hostname": hostname})),
            )
            .await;
        double.clear_faults().await;
        assert!(status.is_server_error(), "{step}: {status} {body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| !d.contains("Bad") && !d.contains(&double.token)),
            "{step}: no Cloudflare text in detail: {body}"
        );
        let (_, live) = double
            .api(
                Method::GET,
                &format!("/accounts/{}/cfd_tunnel?name={name}", double.account),
                None,
            )
            .await;
        assert_eq!(live["result"], json!([]), "{step}: no tunnel left");
        let (_, deleted) = double
            .api(
                Method::GET,
                &format!(
                    "/accounts/{}/cfd_tunnel?name={name}&is_deleted=true",
                    double.account
                ),
                None,
            )
            .await;
        assert_eq!(
            deleted["result"].as_array().map(Vec::len),
            Some(1),
            "{step}: made, then deleted"
        );
        assert!(
            double.dns(&hostname).await.is_empty(),
            "{step}: no CNAME left"
        );
        eprintln!("exposure: tunnel creation failing at its {step}: {status}, compensated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_removes_gone_releases_routes_and_orphaned_dns() {
    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let mut op = start(&double, &["--exposure-reconcile-interval", "0"]).await;
    let namespace = op.tenant().await;
    let (name, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The release goes behind the operator's back.
    let output = tokio::process::Command::new(helm_binary(Major::Helm4))
        .args(["uninstall", &name, "-n", &namespace])
        .output()
        .await
        .expect("helm runs");
    assert!(output.status.success(), "{output:?}");
    // A CNAME of ours that no route names (a crash between its creation
    // and its record), and a dedicated tunnel's CNAME whose tunnel is gone.
    let orphan = double.hostname(&subdomain());
    let (status, body) = double
        .api(
            Method::POST,
            &format!("/zones/{}/dns_records", double.zone),
            Some(json!({"type": "CNAME", "name": orphan, "content": format!("{}.cfargotunnel.com", double.tunnel),
                        "proxied": true, "ttl": 1, "comment": "paas-operator route"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (tunnel_name, tunnel_host) = double.new_tunnel();
    let (status, created) = op
        .call(
            Method::POST,
            "/api/tunnels",
            Some(json!({"name": tunnel_name, "hostname": tunnel_host})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["tunnel_id"].as_str().unwrap_or_default();
    double
        .api(
            Method::DELETE,
            &format!("/accounts/{}/cfd_tunnel/{id}?cascade=true", double.account),
            None,
        )
        .await;
    // Someone else's record is never touched.
    let foreign = double.hostname(&subdomain());
    double
        .api(
            Method::POST,
            &format!("/zones/{}/dns_records", double.zone),
            Some(json!({"type": "CNAME", "name": foreign, "content": format!("{}.cfargotunnel.com", double.tunnel), "proxied": true, "ttl": 1})),
        )
        .await;

    let (status, report) = op.call(Method::POST, "/api/routes/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    eprintln!("exposure: reconcile report {report}");
    let has = |kind: &str, host: &str| {
        report[kind]["hostnames"]
            .as_array()
            .is_some_and(|h| h.contains(&json!(host)))
    };
    assert!(has("removed", &double.hostname(&sub)), "{report}");
    assert!(has("orphaned_dns_removed", &orphan), "{report}");
    assert!(has("orphaned_dns_removed", &tunnel_host), "{report}");
    assert_unrouted(&op, &double, &sub).await;
    assert!(double.dns(&orphan).await.is_empty());
    assert!(double.dns(&tunnel_host).await.is_empty());
    let foreign_records = double.dns(&foreign).await;
    assert_eq!(foreign_records.len(), 1, "foreign record kept");
    double
        .api(
            Method::DELETE,
            &format!(
                "/zones/{}/dns_records/{}",
                double.zone,
                foreign_records[0]["id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    // Nothing left to do: a second run changes nothing of these.
    let (_, again) = op.call(Method::POST, "/api/routes/reconcile", None).await;
    assert_eq!(again["removed"]["count"], 0, "{again}");
    delete_tenant(&op, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_deletion_removes_its_routes() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let namespace = op.tenant().await;
    let subs: Vec<String> = (0..2).map(|_| subdomain()).collect();
    for sub in &subs {
        let (status, body) = install(&op, &namespace, &random_release(), sub).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_ne!(body["route"], Value::Null);
    }
    delete_tenant(&op, &namespace).await;
    for sub in &subs {
        assert_unrouted(&op, &double, sub).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_backend_makes_ingresses() {
    crate::require_env!();
    // Exclusive: its records (backend ingress) must not meet a Cloudflare
    // operator's reconciliation, which would move them.
    let _exclusive = DOUBLE.write().await;
    let mut op = Operator::start(
        Major::Helm4,
        &[
            "--exposure-backend",
            "ingress",
            "--exposure-domain",
            "apps.example.test",
            "--ingress-class",
            "nginx",
            "--ingress-annotations",
            "nginx.ingress.kubernetes.io/proxy-body-size=64m,cert-manager.io/cluster-issuer=letsencrypt",
            "--ingress-tls-secret",
            "apps-tls",
            "--exposure-reconcile-interval",
            "0",
        ],
    )
    .await;
    let namespace = op.tenant().await;
    let (name, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hostname = format!("{sub}.apps.example.test");
    assert_eq!(
        body["route"],
        json!({"hostname": hostname, "service_url": service_url(&name, &namespace), "enabled": true})
    );
    let ingresses: Api<Ingress> = Api::namespaced(op.kube.clone(), &namespace);
    let ingress = ingresses
        .get(&format!("paas-route-{sub}"))
        .await
        .expect("the route's Ingress");
    let labels = ingress.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "paas-operator");
    let annotations = ingress.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations["nginx.ingress.kubernetes.io/proxy-body-size"],
        "64m"
    );
    assert_eq!(annotations["cert-manager.io/cluster-issuer"], "letsencrypt");
    let spec = ingress.spec.clone().expect("spec");
    assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
    let rule = &spec.rules.as_ref().expect("rules")[0];
    assert_eq!(rule.host.as_deref(), Some(hostname.as_str()));
    let backend = rule.http.as_ref().expect("http").paths[0]
        .backend
        .service
        .clone()
        .expect("service backend");
    assert_eq!(backend.name, format!("{name}-web"));
    assert_eq!(backend.port.and_then(|p| p.number), Some(80));
    let tls = spec.tls.expect("tls");
    assert_eq!(tls[0].secret_name.as_deref(), Some("apps-tls"));
    // The routes API lists it; uninstall removes it.
    let (_, list) = op.call(Method::GET, "/api/routes", None).await;
    assert!(
        list["routes"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["hostname"] == hostname.as_str())),
        "{list}"
    );
    let (status, _) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{name}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ingresses
            .get_opt(&format!("paas-route-{sub}"))
            .await
            .expect("read")
            .is_none()
    );
    assert!(record(&op, &sub).await.is_none());
    delete_tenant(&op, &namespace).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_logs_or_error_answers() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let dir = scratch_dir("exposure-logs");
    let log = dir.join("operator.log");
    let port = free_port();
    let env_vars: Vec<(String, String)> = cloudflare_args(&double)
        .chunks(2)
        .map(|pair| {
            (
                pair[0]
                    .trim_start_matches("--")
                    .replace('-', "_")
                    .to_uppercase(),
                pair[1].clone(),
            )
        })
        .chain([
            ("LOG_LEVEL".to_owned(), "trace".to_owned()),
            ("LOG_FORMAT".to_owned(), "json".to_owned()),
        ])
        .collect();
    let env_refs: Vec<(&str, &str)> = env_vars
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut child = OperatorProcess::command(&helm_binary(Major::Helm4), port, &env_refs)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("operator starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    crate::harness::wait_healthy(&http, &base).await;
    // A tunnel (its token is in the answers, never in the log), an exposed
    // install, and Cloudflare failing (its reason logged, not answered).
    let (name, hostname) = double.new_tunnel();
    let (status, created) = call_at(
        &http,
        &base,
        Method::POST,
        "/api/tunnels",
        Some(json!({"name": name, "hostname": hostname})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["tunnel_id"].as_str().unwrap_or_default().to_owned();
    let tunnel_token = created["tunnel_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (status, _) = call_at(
        &http,
        &base,
        Method::GET,
        &format!("/api/tunnels/{id}/token"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let namespace = crate::harness::create_tenant(&http, &base).await;
    let (release, sub) = (random_release(), subdomain());
    let (status, body) = call_at(
        &http,
        &base,
        Method::POST,
        "/api/releases",
        Some(install_body(
            &namespace,
            &release,
            json!({"enabled": true, "subdomain": sub}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, refused) = call_at(
        &http,
        &base,
        Method::POST,
        "/api/tunnels",
        Some(json!({"name": name, "hostname": hostname})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_error(&refused, "tunnel_name_taken");
    for answer in [&body, &refused] {
        let text = answer.to_string();
        assert!(!text.contains(&double.token) && !text.contains(&tunnel_token));
    }
    let (status, _) = call_at(
        &http,
        &base,
        Method::DELETE,
        &format!("/api/tunnels/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call_at(
        &http,
        &base,
        Method::DELETE,
        &format!("/api/namespaces/{namespace}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.lines().count() > 20, "the log has lines");
    assert!(
        text.contains("Cloudflare refused a call"),
        "Cloudflare's reason is logged"
    );
    assert!(!text.contains(&double.token), "API token in the log");
    assert!(!text.contains(&tunnel_token), "tunnel token in the log");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_earlier_operators_routes_go_on_uninstall_with_subdomain() {
    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let mut op = start(&double, &["--exposure-reconcile-interval", "0"]).await;
    let namespace = op.tenant().await;
    let name = random_release();
    // What the earlier operator left: rules for {sub} and {sub}-mcp into
    // the release's namespace with a CNAME without comment, and a rule of
    // the same shape into another namespace.
    let (legacy, elsewhere) = (subdomain(), subdomain());
    let hostname = double.hostname(&legacy);
    let mcp = double.hostname(&format!("{legacy}-mcp"));
    let other = double.hostname(&elsewhere);
    let path = format!(
        "/accounts/{}/cfd_tunnel/{}/configurations",
        double.account, double.tunnel
    );
    let mut config = double.config().await["config"].clone();
    let rules = config["ingress"].as_array_mut().expect("rules");
    for (host, service) in [
        (&hostname, service_url(&name, &namespace)),
        (
            &mcp,
            format!("http://{name}-mcp.{namespace}.svc.cluster.local:3000"),
        ),
        (
            &other,
            "http://web.paas-ws-someone.svc.cluster.local:80".to_owned(),
        ),
    ] {
        rules.insert(0, json!({"hostname": host, "service": service}));
    }
    let (status, _) = double
        .api(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = double
        .api(
            Method::POST,
            &format!("/zones/{}/dns_records", double.zone),
            Some(json!({"type": "CNAME", "name": hostname, "content": format!("{}.cfargotunnel.com", double.tunnel), "proxied": true, "ttl": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The release is gone already: 404, and its earlier routes go.
    let (status, body) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{name}?subdomain={legacy}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(double.rule_for(&hostname).await, None);
    assert_eq!(double.rule_for(&mcp).await, None);
    assert!(double.dns(&hostname).await.is_empty());
    assert!(record(&op, &legacy).await.is_none());
    // One into another namespace is not this release's: it stays.
    let (status, _) = op
        .call(
            Method::DELETE,
            &format!("/api/releases/{namespace}/{name}?subdomain={elsewhere}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        double.rule_for(&other).await.is_some(),
        "another namespace's route kept"
    );
    double.assert_foreign_rule_and_catch_all_kept().await;
    let mut config = double.config().await["config"].clone();
    config["ingress"]
        .as_array_mut()
        .expect("rules")
        .retain(|r| r["hostname"] != other);
    double
        .api(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    delete_tenant(&op, &namespace).await;
}

/// The MCP sidecar's route: `{generated subdomain}-mcp` (never the app's
/// given subdomain) to the `{release}-mcp` Service; it goes with the
/// sidecar and with the release, and the app's route is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_gets_its_mcp_route_and_loses_it_with_the_sidecar() {
    crate::require_env!();
    let _shared = DOUBLE.read().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let namespace = op.tenant().await;
    let (name, sub) = (random_release(), subdomain());
    let (status, body) = install(&op, &namespace, &name, &sub).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let app_service = service_url(&name, &namespace);
    let mcp = format!("{name}-{}-mcp", namespace.trim_start_matches("paas-ws-"));
    let mcp_service = format!("http://{name}-mcp.{namespace}.svc.cluster.local:3000");
    let path = format!("/api/releases/{namespace}/{name}");
    let sidecar = json!({"container": {"name": "mcp-sidecar", "image": "ghcr.io/acme/n8n-mcp:1.2.3",
        "ports": [{"container_port": 3000}]}});

    let (status, body) = op
        .call(
            Method::POST,
            &format!("{path}/sidecar"),
            Some(sidecar.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["mcp_endpoint_url"],
        format!("https://{}/mcp", double.hostname(&mcp))
    );
    assert_eq!(body["mcp_internal_url"], mcp_service.as_str());
    assert_routed(&op, &double, &mcp, &mcp_service).await;
    assert_routed(&op, &double, &sub, &app_service).await;
    // The app's route stays the release's `route`; the MCP one is not it.
    let (_, got) = op.call(Method::GET, &path, None).await;
    assert_eq!(got["route"]["hostname"], double.hostname(&sub));

    // Taking the sidecar off removes its route only.
    let (status, body) = op
        .call(Method::DELETE, &format!("{path}/sidecar"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_unrouted(&op, &double, &mcp).await;
    assert_routed(&op, &double, &sub, &app_service).await;

    // Attached again, then the release uninstalled: both routes go.
    let (status, body) = op
        .call(Method::POST, &format!("{path}/sidecar"), Some(sidecar))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_routed(&op, &double, &mcp, &mcp_service).await;
    let (status, body) = op
        .call(Method::DELETE, &format!("{path}?subdomain={sub}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_unrouted(&op, &double, &mcp).await;
    assert_unrouted(&op, &double, &sub).await;
    double.assert_foreign_rule_and_catch_all_kept().await;
    delete_tenant(&op, &namespace).await;
}

/// Route squatting (issue 20): an app route may not take another
/// release's MCP route name `{generated subdomain}-mcp`, derivable from its
/// public hostname, whether given at install or through `/api/routes`; and
/// an app route already holding such a name (recorded before names ending
/// in `-mcp` were reserved) loses it when that release attaches its
/// sidecar: the victim gets its MCP route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_route_cannot_squat_a_releases_mcp_route() {
    use paas_operator::config::ExposureBackend;
    use paas_operator::exposure::names::Subdomain;
    use paas_operator::exposure::store::{
        ReleaseRef, RouteKind, RouteRecord, RouteState, RouteStore,
    };

    crate::require_env!();
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let mut op = start(&double, &[]).await;
    let victim_ns = op.tenant().await;
    let attacker_ns = op.tenant().await;
    let victim = random_release();
    let victims_mcp = format!("{victim}-{}-mcp", victim_ns.trim_start_matches("paas-ws-"));

    let squatter = random_release();
    let (status, body) = install(&op, &attacker_ns, &squatter, &victims_mcp).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "subdomain_reserved");
    let (status, _) = op
        .call(
            Method::GET,
            &format!("/api/releases/{attacker_ns}/{squatter}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "refused before helm ran");
    let (status, body) = op
        .call(
            Method::POST,
            "/api/routes",
            Some(json!({"subdomain": victims_mcp, "service_url": "http://elsewhere.example:80"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_error(&body, "subdomain_reserved");
    assert!(record(&op, &victims_mcp).await.is_none());

    // What an earlier version let through: the attacker's release, with an
    // app route on the victim's future MCP name, in place.
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install_body(
                &attacker_ns,
                &squatter,
                json!({"enabled": false}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let squatted = service_url(&squatter, &attacker_ns);
    RouteStore::new(op.kube.clone(), "paas-system")
        .create(&RouteRecord {
            subdomain: Subdomain::parse(&victims_mcp).expect("subdomain"),
            hostname: double.hostname(&victims_mcp),
            service_url: squatted.clone(),
            path: None,
            owner: Some(ReleaseRef {
                namespace: attacker_ns.clone(),
                name: squatter.clone(),
            }),
            kind: RouteKind::App,
            backend: ExposureBackend::Cloudflare,
            state: RouteState::Active,
            applied: false,
            dns_record_id: None,
            version: None,
        })
        .await
        .expect("record written")
        .expect("record new");
    let (status, report) = op.call(Method::POST, "/api/routes/reconcile", None).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_routed(&op, &double, &victims_mcp, &squatted).await;

    // The victim installs and attaches its sidecar: its MCP route wins.
    let (status, body) = op
        .call(
            Method::POST,
            "/api/releases",
            Some(install_body(&victim_ns, &victim, json!({"enabled": false}))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let sidecar = json!({"container": {"name": "mcp-sidecar", "image": "ghcr.io/acme/n8n-mcp:1.2.3",
        "ports": [{"container_port": 3000}]}});
    let (status, body) = op
        .call(
            Method::POST,
            &format!("/api/releases/{victim_ns}/{victim}/sidecar"),
            Some(sidecar),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["mcp_endpoint_url"],
        format!("https://{}/mcp", double.hostname(&victims_mcp))
    );
    let mcp_service = format!("http://{victim}-mcp.{victim_ns}.svc.cluster.local:3000");
    assert_routed(&op, &double, &victims_mcp, &mcp_service).await;
    let data = record(&op, &victims_mcp)
        .await
        .and_then(|map| map.data)
        .expect("record");
    assert_eq!(
        (data["kind"].as_str(), data["release"].as_str()),
        ("mcp", victim.as_str())
    );
    delete_tenant(&op, &attacker_ns).await;
    delete_tenant(&op, &victim_ns).await;
    assert_unrouted(&op, &double, &victims_mcp).await;
    double.assert_foreign_rule_and_catch_all_kept().await;
}
