//! End-to-end: helm reaches chart sources only through the operator's
//! guard, so an allowed repository cannot send helm elsewhere: not by a
//! chart URL in its `index.yaml`, not by a redirect. The repository here
//! is served on the machine's own network address (Go never proxies
//! loopback addresses, so 127.0.0.1 would bypass the guard): one port is
//! the allowed source, another stands for "anywhere else", and it must
//! never see a request.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Major, Operator, assert_error, helm_binary, random_release, scratch_dir};

/// The machine's address on its default route, when it has one.
fn own_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// The `web` test chart, packaged.
async fn web_chart() -> Vec<u8> {
    let dir = scratch_dir("egress-chart");
    let chart = format!("{}/testenv/charts/web", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(helm_binary(Major::Helm4))
        .args(["package", &chart, "-d"])
        .arg(&dir)
        .output()
        .await
        .expect("helm package");
    assert!(out.status.success(), "{out:?}");
    let tgz = std::fs::read(dir.join("web-0.1.0.tgz")).expect("packaged");
    let _ = std::fs::remove_dir_all(&dir);
    tgz
}

/// Serves `router` on `ip`, a free port; returns `host:port`.
async fn serve(ip: IpAddr, router: Router) -> String {
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn index(chart_url: &str) -> String {
    format!(
        "apiVersion: v1\nentries:\n  web:\n  - apiVersion: v2\n    name: web\n    version: 0.1.0\n    appVersion: 1.0.0\n    urls:\n    - {chart_url}\n    created: \"2026-11-30T00:00:00Z\"\n    digest: \"\"\ngenerated: \"2026-11-30T00:00:00Z\"\n"
    )
}

async fn install(op: &Operator, ns: &str, repo: &str) -> (StatusCode, Value) {
    let body = json!({"namespace": ns, "name": random_release(), "chart": "web", "repo_url": repo});
    op.call(Method::POST, "/api/releases", Some(body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_reaches_only_allowed_hosts_redirects_and_index_urls_included() {
    crate::require_env!();
    let Some(ip) = own_address() else {
        eprintln!("skipped: the machine has no address but loopback");
        return;
    };
    let tgz = Arc::new(web_chart().await);
    // "Anywhere else": counts what reaches it.
    let elsewhere_hits = Arc::new(AtomicUsize::new(0));
    let hits = elsewhere_hits.clone();
    let payload = tgz.clone();
    let elsewhere = serve(
        ip,
        Router::new().fallback(move || {
            hits.fetch_add(1, Ordering::SeqCst);
            let payload = payload.clone();
            async move {
                (
                    [(header::CONTENT_TYPE, "application/gzip")],
                    payload.to_vec(),
                )
            }
        }),
    )
    .await;
    // The allowed repository: three index files, one per way of sending
    // helm somewhere.
    let allowed_host = {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        let (here, away) = (address.clone(), elsewhere.clone());
        let payload = tgz.clone();
        let router = Router::new()
            .route(
                "/direct/index.yaml",
                get(move || {
                    let here = here.clone();
                    async move { index(&format!("http://{here}/files/web-0.1.0.tgz")) }
                }),
            )
            .route(
                "/indexed/index.yaml",
                get({
                    let away = away.clone();
                    move || {
                        let away = away.clone();
                        async move { index(&format!("http://{away}/web-0.1.0.tgz")) }
                    }
                }),
            )
            .route(
                "/redirected/index.yaml",
                get({
                    let here = address.clone();
                    move || {
                        let here = here.clone();
                        async move { index(&format!("http://{here}/redirect/web-0.1.0.tgz")) }
                    }
                }),
            )
            .route(
                "/redirect/web-0.1.0.tgz",
                get(move || {
                    let away = away.clone();
                    async move { Redirect::temporary(&format!("http://{away}/web-0.1.0.tgz")) }
                }),
            )
            .route(
                "/files/web-0.1.0.tgz",
                get(move || {
                    let payload = payload.clone();
                    async move {
                        (
                            AxumStatus::OK,
                            [(header::CONTENT_TYPE, "application/gzip")],
                            payload.to_vec(),
                        )
                            .into_response()
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await });
        address
    };
    let sources = format!(
        "http://{allowed_host}/direct,http://{allowed_host}/indexed,http://{allowed_host}/redirected"
    );
    let mut op = Operator::start(Major::Helm4, &["--allowed-chart-sources", &sources]).await;
    let ns = op.tenant().await;

    // Through the guard to an allowed host: installed.
    let (status, body) = install(&op, &ns, &format!("http://{allowed_host}/direct")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // An index.yaml naming another host, and a redirect to it: helm is
    // refused by the guard, the other host sees nothing.
    for repo in ["indexed", "redirected"] {
        let (status, body) = install(&op, &ns, &format!("http://{allowed_host}/{repo}")).await;
        assert!(
            status.is_client_error() || status.is_server_error(),
            "{repo}: {status} {body}"
        );
        assert!(body["detail"].is_string(), "{body}");
        assert!(
            !body.to_string().contains(&elsewhere),
            "the other host is not named: {body}"
        );
    }
    assert_eq!(
        elsewhere_hits.load(Ordering::SeqCst),
        0,
        "helm reached a host that is no allowed source"
    );
    let metrics = op
        .http
        .get(format!("{}/metrics", op.base))
        .send()
        .await
        .expect("metrics");
    let text = metrics.text().await.expect("text");
    let refused: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("helm_egress_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0);
    assert!(refused >= 2.0, "{text}");

    // A host outside the allow-list is refused before any network I/O, the
    // same for an open and a closed port (no port-scan oracle).
    for target in [
        format!("oci://{elsewhere}/charts/web"),
        format!("oci://{ip}:9/charts/web"),
    ] {
        let body = json!({"namespace": ns, "name": random_release(), "chart": target});
        let (status, answer) = op.call(Method::POST, "/api/releases", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert_error(&answer, "chart_source_not_allowed");
    }
    assert_eq!(elsewhere_hits.load(Ordering::SeqCst), 0);
}
