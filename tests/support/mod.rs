//! Shared helpers for the end-to-end tests: the local control plane's
//! coordinates (from `target/testenv/env`, exported by `scripts/test`), an
//! operator served in process on 127.0.0.1:0, and a fresh random tenant
//! namespace per test.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use paas_operator::config::Config;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const API_KEY: &str = "e2e-test-key-7d1f";

/// Which helm major the operator under test runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Major {
    Helm3,
    Helm4,
}

/// Reads a variable the test script exports; fails loudly when the local
/// control plane is not up.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: start the local control plane with `scripts/testenv up` and run the tests with `scripts/test`")
    })
}

pub fn helm_binary(major: Major) -> String {
    match major {
        Major::Helm3 => env("HELM3_BINARY"),
        Major::Helm4 => env("HELM4_BINARY"),
    }
}

/// `oci://<registry>/charts/<chart>`.
pub fn oci_chart(chart: &str) -> String {
    format!("oci://{}/charts/{chart}", env("OCI_REGISTRY"))
}

/// A random tenant namespace name, `paas-ws-` + 8 hex digits.
pub fn random_namespace() -> String {
    format!("paas-ws-{:08x}", rand::rng().random::<u32>())
}

/// A random release name, `svc-` + 8 hex digits.
pub fn random_release() -> String {
    format!("svc-{:08x}", rand::rng().random::<u32>())
}

/// An operator served in process, with the client the platform would use.
pub struct Operator {
    pub base: String,
    pub http: reqwest::Client,
    pub kube: kube::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    namespaces: Vec<String>,
}

impl Operator {
    /// Starts an operator using the given helm major and extra arguments.
    pub async fn start(major: Major, extra: &[&str]) -> Self {
        let registry = env("OCI_REGISTRY");
        let helm = helm_binary(major);
        let mut args = vec![
            "paas-operator",
            "--api-key",
            API_KEY,
            "--helm-binary",
            &helm,
            "--plain-http-registries",
            &registry,
            "--allow-http-charts",
            "--helm-timeout",
            "120",
            "--release-lock-wait",
            "2",
        ];
        args.extend_from_slice(extra);
        let config = Config::parse_from(args);
        let state = paas_operator::build_state(config)
            .await
            .expect("operator state");
        let kube = state.client.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(paas_operator::serve(
            state,
            listener,
            async {
                let _ = rx.await;
            },
            Duration::from_secs(30),
        ));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(180))
            .build()
            .expect("http client");
        Self {
            base,
            http,
            kube,
            shutdown: Some(tx),
            namespaces: Vec::new(),
        }
    }

    /// Sends a request with the API key; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with_key(method, path, body, Some(API_KEY)).await
    }

    pub async fn call_with_key(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        key: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("X-API-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body read");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// Creates a fresh tenant namespace through the API; deleted on drop.
    pub async fn tenant(&mut self) -> String {
        let namespace = random_namespace();
        let (status, body) = self
            .call(
                Method::POST,
                "/api/namespaces",
                Some(serde_json::json!({"name": namespace})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.namespaces.push(namespace.clone());
        namespace
    }

    /// Remembers a namespace made another way, so it is deleted on drop.
    pub fn forget_later(&mut self, namespace: &str) {
        self.namespaces.push(namespace.to_owned());
    }

    /// Polls `check` every 200 ms until it returns `Some`, or panics after `limit`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, limit: Duration, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                started.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let namespaces = std::mem::take(&mut self.namespaces);
        // Best-effort cleanup on a separate thread: the test's runtime is ending.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(kube) = kube::Client::try_default().await else {
                    return;
                };
                let api: Api<Namespace> = Api::all(kube);
                for namespace in namespaces {
                    let _ = api.delete(&namespace, &Default::default()).await;
                }
            });
        })
        .join();
    }
}

/// Runs an async test body once with Helm 3 and once with Helm 4.
#[macro_export]
macro_rules! both_helms {
    ($body:ident) => {
        mod $body {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm3() {
                super::$body($crate::support::Major::Helm3).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn helm4() {
                super::$body($crate::support::Major::Helm4).await;
            }
        }
    };
}
