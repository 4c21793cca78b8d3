//! End-to-end: release reads through the helm CLI (`RELEASE_READS=helm`,
//! the path HELM_DRIVER=sql takes) against the real local control plane,
//! with Helm 3 and with Helm 4. The answers must be those of storage reads
//! (a second operator reading the same records directly is asked the same
//! questions), and reads must fail with a clear error when helm's storage
//! cannot be reached.

use crate::harness::{
    API_KEY, Major, Operator, assert_error, free_port, helm_binary, oci_chart, random_release,
    recorded_helm_calls, recording_helm, scratch_dir, wait_pods_ready,
};
use clap::Parser;
use paas_operator::config::Config;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The read path is chosen once at start from HELM_DRIVER and RELEASE_READS;
/// drivers the operator cannot work with are one-line start-up errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_picks_the_read_path() {
    crate::require_env!();
    let helm = helm_binary(Major::Helm4);
    let start = |extra: &[&str]| {
        let mut args = vec![
            "paas-operator",
            "--api-key",
            API_KEY,
            "--helm-binary",
            &helm,
            // The launcher and checker: the operator binary (this test
            // binary cannot be them).
            "--confine-checker",
            env!("CARGO_BIN_EXE_paas-operator"),
        ];
        args.extend_from_slice(extra);
        paas_operator::build_state(Config::parse_from(args))
    };
    let through_cli = |extra: &'static [&'static str]| {
        let state = start(extra);
        async move { state.await.expect("starts").releases.reads_through_cli() }
    };
    assert!(!through_cli(&[]).await);
    assert!(!through_cli(&["--helm-driver", "configmap"]).await);
    assert!(through_cli(&["--helm-driver", "sql"]).await);
    assert!(through_cli(&["--release-reads", "helm"]).await);
    let refused = |extra: &'static [&'static str]| {
        let state = start(extra);
        async move { state.await.err().expect("refused").to_string() }
    };
    // Drivers the operator cannot work with are refused by the parser.
    let memory = Config::try_parse_from(["paas-operator", "--helm-driver", "memory"]);
    assert!(memory.unwrap_err().to_string().contains("memory"));
    assert!(
        refused(&["--helm-driver", "sql", "--release-reads", "storage"])
            .await
            .contains("RELEASE_READS=helm")
    );
}

/// GET release, revisions and status answer 404 `release_not_found`.
async fn assert_reads_missing(op: &Operator, path: &str) {
    for url in [
        path.to_owned(),
        format!("{path}/revisions"),
        format!("{path}/status"),
    ] {
        let (status, body) = op.call(Method::GET, &url, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "GET {url}: {body}");
        assert_error(&body, "release_not_found");
    }
}

/// The same GET through both operators: same status, same body. The
/// writes go through the CLI operator, so the storage operator (another
/// replica) shows them when its watch delivers them: milliseconds, more on
/// a loaded machine; it is asked again for up to 10 s.
async fn same_answer(cli: &Operator, storage: &Operator, url: &str) -> Value {
    let (status, from_cli) = cli.call(Method::GET, url, None).await;
    let started = std::time::Instant::now();
    let (direct_status, from_storage) = loop {
        let (status, body) = storage.call(Method::GET, url, None).await;
        if body == from_cli || started.elapsed() > std::time::Duration::from_secs(10) {
            break (status, body);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, StatusCode::OK, "GET {url}: {from_cli}");
    assert_eq!(direct_status, StatusCode::OK, "GET {url}: {from_storage}");
    assert_eq!(
        from_cli, from_storage,
        "GET {url}: CLI and storage reads differ"
    );
    from_cli
}

async fn lifecycle(major: Major) {
    let dir = scratch_dir("cli-reads");
    let (helm, log) = recording_helm(&helm_binary(major), &dir);
    let mut op = Operator::start_with_helm(&helm, &["--release-reads", "helm"]).await;
    let storage = Operator::start(major, &[]).await;
    let ns = op.tenant().await;
    let name = random_release();
    let path = format!("/api/releases/{ns}/{name}");
    assert_reads_missing(&op, &path).await;

    // Install: its existence check is a CLI read of a missing release.
    let install = json!({"namespace": ns, "name": name, "chart": oci_chart("web"), "version": "0.1.0",
        "values": {"replicaCount": 2, "auth": {"password": "pa,ss=word"}}, "create_namespace": true});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["revision"], 1);
    let first_app_version = body["app_version"].clone();

    let release = same_answer(&op, &storage, &path).await;
    assert_eq!(
        (&release["revision"], &release["status"], &release["chart"]),
        (&json!(1), &json!("deployed"), &json!("web"))
    );
    assert_eq!(release["values"], Value::Null);

    // Status finds the pods from the manifest helm printed.
    let status_body = wait_pods_ready(&op, &path).await;
    assert_eq!(status_body["pods"].as_array().map(Vec::len), Some(2));
    assert_eq!(status_body["release"], release);

    // Upgrade with reuse_values: the earlier values come from `helm get values`.
    let upgrade =
        json!({"chart": oci_chart("web"), "version": "0.2.0", "values": {"replicaCount": 1}});
    let (status, body) = op.call(Method::PATCH, &path, Some(upgrade)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2);
    assert_eq!(body["values"]["replicaCount"], 1);
    assert_eq!(body["values"]["auth"]["password"], "pa,ss=word");

    let revisions = same_answer(&op, &storage, &format!("{path}/revisions")).await;
    let charts: Vec<&Value> = revisions["revisions"]
        .as_array()
        .expect("revisions")
        .iter()
        .map(|r| &r["chart"])
        .collect();
    assert_eq!(charts, [&json!("web-0.1.0"), &json!("web-0.2.0")]);
    assert_eq!(revisions["revisions"][0]["status"], "superseded");

    // Rollback checks the revision against the history helm printed.
    let rollback = format!("{path}/rollback");
    let (status, body) = op
        .call(Method::POST, &rollback, Some(json!({"revision": 42})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_error(&body, "revision_not_found");
    let (status, body) = op
        .call(Method::POST, &rollback, Some(json!({"revision": 1})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let release = same_answer(&op, &storage, &path).await;
    assert_eq!(release["revision"], 3);
    assert_eq!(release["app_version"], first_app_version);

    // The namespace view lists releases with `helm list`.
    let (status, view) = op
        .call(Method::GET, &format!("/api/namespaces/{ns}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    let (_, direct_view) = storage
        .call(Method::GET, &format!("/api/namespaces/{ns}"), None)
        .await;
    assert_eq!(view["releases"], direct_view["releases"]);
    assert_eq!(view["releases"][0]["revision"], 3);

    // Every kind of read above ran helm.
    let calls = recorded_helm_calls(&log);
    for read in ["get all ", "get values ", "history ", "list "] {
        assert!(
            calls.iter().any(|c| c.starts_with(read)),
            "no `helm {read}` in {calls:?}"
        );
    }

    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_reads_missing(&op, &path).await;
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
crate::both_helms!(lifecycle);

/// HELM_DRIVER=sql starts and reads through helm; with no database to
/// reach (there is none here), every read is a clear 500 that names neither
/// the database nor its connection string.
async fn sql_driver_without_a_database(major: Major) {
    let password = "hunter2-never-shown";
    let connection = format!(
        "postgres://helm:{password}@127.0.0.1:{}/helm?sslmode=disable&connect_timeout=2",
        free_port()
    );
    let mut op = Operator::start(
        major,
        &[
            "--helm-driver",
            "sql",
            "--helm-driver-sql-connection-string",
            &connection,
        ],
    )
    .await;
    let ns = op.tenant().await;
    let path = format!("/api/releases/{ns}/{}", random_release());
    let install = json!({"namespace": ns, "name": random_release(), "chart": oci_chart("web")});
    let calls = [
        (Method::GET, path.clone(), None),
        (Method::GET, format!("{path}/revisions"), None),
        (Method::GET, format!("{path}/status"), None),
        (Method::GET, format!("/api/namespaces/{ns}"), None),
        (Method::POST, "/api/releases".to_owned(), Some(install)),
    ];
    for (method, url, body) in calls {
        let (status, answer) = op.call(method.clone(), &url, body).await;
        assert_eq!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{method} {url}: {answer}"
        );
        assert_error(&answer, "helm_failed");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(
            !detail.contains(password) && !detail.contains("127.0.0.1"),
            "{detail}"
        );
    }
}
crate::both_helms!(sql_driver_without_a_database);
