//! End-to-end: a chart's values schema cannot make helm reach outside the
//! chart. helm validates values against every `values.schema.json` (the
//! chart's and its subcharts') and its schema library fetches what they
//! name: `http://127.0.0.1…` and `http://localhost…` directly (Go never
//! proxies loopback), `file://…` from the operator's disk (whether a value
//! matches a host file became 400 vs 201: a file-content oracle), a
//! relative `sub.json` as `/sub.json`, an unknown `$schema` likewise. The
//! operator inspects every chart before helm runs and refuses all of them
//! with one answer (400 `chart_schema_refused`), whatever the host holds.
//!
//! Each case is a variant of the `schema-probe` fixture chart (its schema
//! written here, pushed under its own name). A listener stands for "a
//! service on the operator's loopback": bare helm reaches it, proving the
//! variant really makes helm reach out; through the operator it must see
//! no connection at all.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{
    Major, Operator, assert_error, env, fixture_variant, helm_binary, oci_chart, push_chart_dir,
    random_release,
};

/// Counts TCP connections to one port on 127.0.0.1 (and ::1, where the
/// machine has it: `localhost` may resolve to either).
struct CountingListener {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl CountingListener {
    async fn start() -> Self {
        let v4 = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let port = v4.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let mut listeners = vec![v4];
        if let Ok(v6) = tokio::net::TcpListener::bind(("::1", port)).await {
            listeners.push(v6);
        }
        for listener in listeners {
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    connections.fetch_add(1, Ordering::SeqCst);
                    drop(socket);
                }
            });
        }
        Self { port, connections }
    }

    fn seen(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A schema whose `name` property is `{"$ref": reference}`.
fn referencing(reference: &str) -> String {
    json!({"type": "object", "properties": {"name": {"$ref": reference}}}).to_string()
}

/// Pushes the `schema-probe` variant `case` with these schemas.
async fn probe_chart(case: &str, tag: &str, schema: &str, sub_schema: &str) -> String {
    let dir = fixture_variant(
        "schema-probe",
        &format!("{case}-{tag}"),
        &[("__SCHEMA__", schema), ("__SUB_SCHEMA__", sub_schema)],
    );
    let chart = push_chart_dir(&dir).await;
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    chart
}

/// What an install of `chart` answers.
async fn install(
    op: &Operator,
    ns: &str,
    chart: &str,
    values: Value,
) -> (StatusCode, Value, String) {
    let name = random_release();
    let body = json!({"namespace": ns, "name": name, "chart": chart, "values": values});
    let (status, answer) = op.call(Method::POST, "/api/releases", Some(body)).await;
    (status, answer, name)
}

/// Nothing of release `name` exists: no release, none of its ConfigMaps.
async fn nothing_created(op: &Operator, ns: &str, name: &str) {
    let (status, _) = op
        .call(Method::GET, &format!("/api/releases/{ns}/{name}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "release {name}");
    let maps: Api<ConfigMap> = Api::namespaced(op.kube.clone(), ns);
    let made: Vec<String> = maps
        .list(&Default::default())
        .await
        .expect("list ConfigMaps")
        .into_iter()
        .filter_map(|m| m.metadata.name)
        .filter(|n| n.starts_with(name))
        .collect();
    assert!(made.is_empty(), "{made:?}");
}

async fn schemas_that_reach_out_are_refused(major: Major) {
    let listener = CountingListener::start().await;
    let port = listener.port;
    let tag = format!("{port}-{}", if major == Major::Helm3 { 3 } else { 4 });
    let loopback = referencing(&format!("http://127.0.0.1:{port}/name.json"));

    // Bare helm (no operator) reaches the listener with this chart.
    let dir = fixture_variant(
        "schema-probe",
        &format!("bare-{tag}"),
        &[("__SCHEMA__", &loopback), ("__SUB_SCHEMA__", "{}")],
    );
    let bare = tokio::process::Command::new(helm_binary(major))
        .arg("template")
        .arg("probe")
        .arg(&dir)
        .output()
        .await
        .expect("bare helm");
    assert!(
        !bare.status.success(),
        "bare helm validated against the listener's nothing"
    );
    assert!(
        listener.seen() >= 1,
        "bare helm did not reach the listener: the case proves nothing"
    );
    let _ = std::fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    let after_bare = listener.seen();

    let cases: Vec<(&str, String, String)> = vec![
        ("loopback", loopback.clone(), "{}".into()),
        (
            "localhost",
            referencing(&format!("http://localhost:{port}/name.json")),
            "{}".into(),
        ),
        ("etc-file", referencing("file:///etc/hostname"), "{}".into()),
        (
            "no-file",
            referencing("file:///nonexistent/name.json"),
            "{}".into(),
        ),
        ("relative", referencing("sub.json"), "{}".into()),
        (
            "meta",
            json!({"$schema": format!("http://127.0.0.1:{port}/meta")}).to_string(),
            "{}".into(),
        ),
        (
            "dynamic",
            json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$dynamicRef": format!("http://localhost:{port}/d")}).to_string(),
            "{}".into(),
        ),
        // The subchart's schema, not the chart's.
        ("subchart", "{}".into(), loopback.clone()),
    ];
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let mut answers = Vec::new();
    for (case, schema, sub_schema) in cases {
        let chart = probe_chart(case, &tag, &schema, &sub_schema).await;
        let (status, answer, name) = install(&op, &ns, &chart, json!({"name": "x"})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {answer}");
        assert_error(&answer, "chart_schema_refused");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains(&port.to_string())
                && !detail.contains("/etc")
                && !detail.contains("file:"),
            "{case}: the detail echoes the schema: {detail}"
        );
        nothing_created(&op, &ns, &name).await;
        answers.push((case, answer));
    }
    // A host file that exists and one that does not: the same answer.
    let answer = |case: &str| {
        answers
            .iter()
            .find(|(c, _)| *c == case)
            .map(|(_, a)| a.clone())
            .expect("case")
    };
    assert_eq!(answer("etc-file"), answer("no-file"));
    assert_eq!(
        listener.seen(),
        after_bare,
        "helm reached a loopback service through the operator"
    );

    // An upgrade to such a chart is refused the same way, before helm.
    let (status, body, name) = install(&op, &ns, &oci_chart("web"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let refused = probe_chart("upgrade", &tag, &loopback, "{}").await;
    let (status, answer) = op
        .call(
            Method::PATCH,
            &format!("/api/releases/{ns}/{name}"),
            Some(json!({"chart": refused, "values": {"name": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "chart_schema_refused");
    let (_, release) = op
        .call(Method::GET, &format!("/api/releases/{ns}/{name}"), None)
        .await;
    assert_eq!(release["revision"], 1, "{release}");
    assert_eq!(listener.seen(), after_bare);
}
crate::both_helms!(schemas_that_reach_out_are_refused);

/// A schema with local references only still validates values through
/// helm, as before: values that break it are helm's 400 `invalid_values`,
/// values that keep it install.
async fn local_schemas_still_validate_values(major: Major) {
    let schema = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "definitions": {"name": {"type": "string", "maxLength": 20}},
        "type": "object",
        "properties": {"name": {"$ref": "#/definitions/name"}}
    })
    .to_string();
    let tag = format!("{:08x}-{major:?}", rand::random::<u32>()).to_lowercase();
    let chart = probe_chart(
        "local",
        &tag,
        &schema,
        r#"{"properties":{"enabled":{"type":"boolean"}}}"#,
    )
    .await;
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let (status, answer, name) = install(&op, &ns, &chart, json!({"name": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "invalid_values");
    nothing_created(&op, &ns, &name).await;
    // The subchart's schema is helm's to apply too.
    let (status, answer, _) = install(
        &op,
        &ns,
        &chart,
        json!({"name": "ok", "sub": {"enabled": "yes"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_error(&answer, "invalid_values");
    let (status, body, name) = install(&op, &ns, &chart, json!({"name": "ok"})).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let maps: Api<ConfigMap> = Api::namespaced(op.kube.clone(), &ns);
    let made = maps
        .get(&format!("{name}-probe"))
        .await
        .expect("the chart's ConfigMap");
    assert_eq!(made.data.unwrap_or_default()["name"], "ok");
}
crate::both_helms!(local_schemas_still_validate_values);

/// No version: the highest release, from an OCI registry (its tags) and
/// from a classic repository (its index), as helm would choose.
async fn latest_versions_install(major: Major) {
    let mut op = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    for body in [
        json!({"chart": oci_chart("web")}),
        json!({"chart": "web", "repo_url": env("CHART_REPO_URL")}),
    ] {
        let mut install = body.clone();
        install["namespace"] = json!(ns);
        install["name"] = json!(random_release());
        let (status, answer) = op.call(Method::POST, "/api/releases", Some(install)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}: {answer}");
        assert_eq!(answer["chart"], "web", "{answer}");
        let path = format!(
            "/api/releases/{ns}/{}/revisions",
            answer["name"].as_str().unwrap_or_default()
        );
        let (_, revisions) = op.call(Method::GET, &path, None).await;
        assert_eq!(
            revisions["revisions"][0]["chart"], "web-0.2.0",
            "{body}: {revisions}"
        );
    }
}
crate::both_helms!(latest_versions_install);
