//! End-to-end: a cluster as the earlier (Python) operator leaves it, made
//! the way it made things (its namespace with only `paas-managed=true` and
//! `{ns}-quota`; releases installed by helm as admin; a sidecar added with
//! `kubectl patch --type=json`; a `{release}-mcp` Service beside Helm;
//! rules in the shared tunnel and relative-name CNAMEs with ttl 1, proxied,
//! no comment), then `paas-operator migrate` (the real binary) and the
//! operator's own uninstall and namespace deletion. They share the
//! Cloudflare double's tunnel and edit it directly: run them under the
//! exposure lock (`_exposure` in their names).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;
use kube::api::PostParams;
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::exposure::{DOUBLE, Double, cloudflare_args, record};
use crate::harness::{
    Major, Operator, OperatorProcess, env, fixture_chart, helm_binary, oci_chart, random_namespace,
    random_release,
};

/// The earlier operator's sidecar container, as the platform sent it.
fn sidecar_container(release: &str) -> Value {
    json!({
        "name": "mcp-sidecar", "image": "ghcr.io/czlonkowski/n8n-mcp:latest",
        "ports": [{"containerPort": 3000}],
        "env": [
            {"name": "MCP_MODE", "value": "http"},
            {"name": "AUTH_TOKEN", "value": "5b0f2d7e-1c1a-4e55-9a0e-3c2b1d0e9f8a"},
            {"name": "N8N_API_URL", "value": "http://localhost:5678"},
            {"name": "PORT", "value": "3000"},
            {"name": "N8N_API_KEY", "valueFrom": {"secretKeyRef": {"name": format!("{release}-n8n-app-secret"), "key": "N8N_API_KEY"}}}
        ],
        "resources": {"requests": {"memory": "128Mi", "cpu": "100m"}, "limits": {"memory": "256Mi", "cpu": "200m"}},
        "livenessProbe": {"httpGet": {"path": "/health", "port": 3000}, "initialDelaySeconds": 15, "periodSeconds": 30},
        "readinessProbe": {"httpGet": {"path": "/health", "port": 3000}, "initialDelaySeconds": 10, "periodSeconds": 10}
    })
}

/// What was seeded, for the assertions.
struct Earlier {
    namespace: String,
    /// The n8n release with the kubectl-patched sidecar and `-mcp` Service.
    n8n: String,
    /// A `web` release exposed at a platform subdomain.
    web: String,
    /// `{n8n}-{suffix}`, `{n8n}-{suffix}-mcp`, `paas-cs-…` (web).
    app: String,
    mcp: String,
    platform: String,
    quota: BTreeMap<String, String>,
}

impl Earlier {
    fn subdomains(&self) -> [&str; 3] {
        [&self.app, &self.mcp, &self.platform]
    }
}

fn kubectl() -> std::path::PathBuf {
    std::path::Path::new(&env("HELM4_BINARY")).with_file_name("kubectl")
}

async fn run(program: &std::path::Path, args: &[&str]) {
    let output = tokio::process::Command::new(program)
        .args(args)
        .output()
        .await
        .expect("runs");
    assert!(output.status.success(), "{program:?} {args:?}: {output:?}");
}

/// Seeds the namespace, releases, sidecar, Service, rules and CNAMEs.
async fn seed(op: &mut Operator, double: &Double, major: Major) -> Earlier {
    let namespace = random_namespace();
    op.forget_later(&namespace);
    let namespaces = Api::<Namespace>::all(op.kube.clone());
    let created: Namespace = serde_json::from_value(
        json!({"metadata": {"name": namespace, "labels": {"paas-managed": "true"}}}),
    )
    .expect("namespace");
    namespaces
        .create(&PostParams::default(), &created)
        .await
        .expect("namespace created");
    let hard = json!({"requests.cpu": "8", "requests.memory": "8Gi", "limits.cpu": "8",
        "limits.memory": "8Gi", "persistentvolumeclaims": "10", "requests.storage": "100Gi"});
    let quota: ResourceQuota = serde_json::from_value(
        json!({"metadata": {"name": format!("{namespace}-quota")}, "spec": {"hard": hard}}),
    )
    .expect("quota");
    Api::<ResourceQuota>::namespaced(op.kube.clone(), &namespace)
        .create(&PostParams::default(), &quota)
        .await
        .expect("quota created");

    // Releases installed by helm with the earlier operator's (admin) rights.
    let helm = helm_binary(major);
    let (n8n, web) = (random_release(), random_release());
    let n8n_chart = fixture_chart("n8n").await;
    run(
        helm.as_ref(),
        &[
            "install",
            &n8n,
            &n8n_chart,
            "--namespace",
            &namespace,
            "--plain-http",
        ],
    )
    .await;
    run(
        helm.as_ref(),
        &[
            "install",
            &web,
            &oci_chart("web"),
            "--version",
            "0.1.0",
            "--namespace",
            &namespace,
            "--plain-http",
        ],
    )
    .await;
    // Its sidecar: one JSON-patch op, as `kubectl patch --type=json`.
    let patch = json!([{"op": "add", "path": "/spec/template/spec/containers/-", "value": sidecar_container(&n8n)}]);
    run(
        &kubectl(),
        &[
            "patch",
            "deployment",
            &format!("{n8n}-n8n"),
            "--namespace",
            &namespace,
            "--type=json",
            &format!("--patch={patch}"),
        ],
    )
    .await;
    // Its `{release}-mcp` Service, applied beside Helm.
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": format!("{n8n}-mcp"), "labels": {
            "app.kubernetes.io/instance": n8n, "app.kubernetes.io/component": "mcp-sidecar"}},
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/instance": n8n},
                 "ports": [{"port": 3000, "targetPort": 3000, "protocol": "TCP", "name": "mcp"}]}
    }))
    .expect("service");
    Api::<Service>::namespaced(op.kube.clone(), &namespace)
        .create(&PostParams::default(), &service)
        .await
        .expect("mcp service");

    let suffix = namespace.trim_start_matches("paas-ws-");
    let app = format!("{n8n}-{suffix}");
    let mcp = format!("{app}-mcp");
    let platform = format!(
        "paas-cs-{:08x}-{:08x}",
        rand::rng().random::<u32>(),
        rand::rng().random::<u32>()
    );
    let cluster =
        |service: &str, port: u16| format!("http://{service}.{namespace}.svc.cluster.local:{port}");
    seed_routes(
        double,
        &[
            (&app, cluster(&format!("{n8n}-n8n"), 5678)),
            (&mcp, cluster(&format!("{n8n}-mcp"), 3000)),
            (&platform, cluster(&format!("{web}-web"), 80)),
        ],
    )
    .await;
    let quota = hard
        .as_object()
        .expect("hard")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    Earlier {
        namespace,
        n8n,
        web,
        app,
        mcp,
        platform,
        quota,
    }
}

/// Rules (before the catch-all, as its `create_route` did) and CNAMEs as
/// the earlier operator made them: a name relative to the zone, ttl 1,
/// proxied, no comment.
async fn seed_routes(double: &Double, routes: &[(&String, String)]) {
    let mut config = double.config().await["config"].clone();
    let rules = config["ingress"].as_array_mut().expect("rules");
    for (subdomain, service) in routes {
        let at = rules.len() - 1;
        rules.insert(
            at,
            json!({"hostname": double.hostname(subdomain), "service": service}),
        );
    }
    put_config(double, config).await;
    for (subdomain, _) in routes {
        let hostname = double.hostname(subdomain);
        let relative = hostname
            .strip_suffix(&format!(".{}", double.zone_name()))
            .expect("under the zone");
        let (status, body) = double
            .api(
                Method::POST,
                &format!("/zones/{}/dns_records", double.zone),
                Some(json!({"type": "CNAME", "name": relative,
                    "content": format!("{}.cfargotunnel.com", double.tunnel), "ttl": 1, "proxied": true})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
}

async fn put_config(double: &Double, config: Value) {
    let path = format!(
        "/accounts/{}/cfd_tunnel/{}/configurations",
        double.account, double.tunnel
    );
    let (status, body) = double
        .api(Method::PUT, &path, Some(json!({"config": config})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Removes whatever a failed run left of `subdomains` in the double.
async fn unseed(double: &Double, subdomains: &[&str]) {
    let hostnames: Vec<String> = subdomains.iter().map(|s| double.hostname(s)).collect();
    let mut config = double.config().await["config"].clone();
    config["ingress"]
        .as_array_mut()
        .expect("rules")
        .retain(|r| !hostnames.iter().any(|h| r["hostname"] == h.as_str()));
    put_config(double, config).await;
    for hostname in &hostnames {
        for record in double.dns(hostname).await {
            let id = record["id"].as_str().unwrap_or_default();
            double
                .api(
                    Method::DELETE,
                    &format!("/zones/{}/dns_records/{id}", double.zone),
                    None,
                )
                .await;
        }
    }
}

/// The exposure settings of the double, as the binary's environment.
fn cloudflare_env(double: &Double) -> Vec<(&'static str, String)> {
    vec![
        ("EXPOSURE_BACKEND", "cloudflare".to_owned()),
        ("CLOUDFLARE_API_BASE", double.api.clone()),
        ("CLOUDFLARE_API_TOKEN", double.token.clone()),
        ("CLOUDFLARE_ACCOUNT_ID", double.account.clone()),
        ("CLOUDFLARE_TUNNEL_ID", double.tunnel.clone()),
        ("CLOUDFLARE_ZONE_ID", double.zone.clone()),
        ("CLOUDFLARE_DOMAIN", double.domain.clone()),
    ]
}

/// Who runs the migration.
#[derive(Clone, Copy, PartialEq)]
enum As {
    /// The operator's identity (its ServiceAccount with `scripts/test`).
    Operator,
    /// A cluster admin (reads every tenant namespace before it is set up).
    Admin,
}

/// Runs `paas-operator migrate …` (the binary, the service's settings in
/// its environment) for one namespace; returns its stdout.
async fn migrate(
    major: Major,
    double: &Double,
    namespace: &str,
    identity: As,
    args: &[&str],
) -> String {
    let mut variables = cloudflare_env(double);
    if identity == As::Admin {
        variables.push(("KUBECONFIG", env("KUBECONFIG")));
    }
    let variables: Vec<(&str, &str)> = variables.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut command = OperatorProcess::command(&helm_binary(major), 0, &variables);
    command
        .arg("migrate")
        .args(["--namespace", namespace])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let output = command.output().await.expect("migrate runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "migrate {args:?}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn migrate_json(
    major: Major,
    double: &Double,
    namespace: &str,
    identity: As,
    apply: bool,
) -> Value {
    let mode = if apply { "--apply" } else { "--dry-run" };
    let out = migrate(
        major,
        double,
        namespace,
        identity,
        &[mode, "--output", "json"],
    )
    .await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn finding<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|items| items.iter().find(|i| i[key] == value))
        .unwrap_or_else(|| panic!("no {key} = {value} in {list}"))
}

async fn revision(op: &Operator, namespace: &str, release: &str) -> u64 {
    let (status, body) = op
        .call(
            Method::GET,
            &format!("/api/releases/{namespace}/{release}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["revision"].as_u64().expect("revision")
}

async fn containers(op: &Operator, namespace: &str, deployment: &str) -> Vec<String> {
    Api::<Deployment>::namespaced(op.kube.clone(), namespace)
        .get(deployment)
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers.into_iter().map(|c| c.name).collect())
        .unwrap_or_default()
}

/// The whole upgrade path: a dry run reports everything and changes
/// nothing; `--apply` adopts it (quota untouched); a second `--apply`
/// changes nothing; the operator then serves the releases, and uninstall
/// removes what was adopted.
async fn migrate_what_the_earlier_operator_left_exposure(major: Major) {
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let args = cloudflare_args(&double);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = Operator::start(major, &args).await;
    let earlier = seed(&mut op, &double, major).await;
    let ns = earlier.namespace.clone();

    // The dry run as the operator: the namespace listed; what it cannot
    // read yet is said so; nothing changed.
    let partial = migrate_json(major, &double, &ns, As::Operator, false).await;
    finding(&partial["namespaces"], "namespace", &ns);
    for route in partial["routes"].as_array().expect("routes") {
        let readable = route["action"] == "adopt";
        let said = route["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--apply sets it up first"));
        assert!(readable || said, "{route}");
    }
    assert_untouched(&op, &double, &earlier).await;
    // The dry run as an admin: everything listed, nothing changed.
    let text = migrate(major, &double, &ns, As::Admin, &[]).await;
    eprintln!("--- migrate (dry run) ---\n{text}");
    let dry = migrate_json(major, &double, &ns, As::Admin, false).await;
    assert_eq!(dry["mode"], "dry-run");
    let missing: Vec<&str> = finding(&dry["namespaces"], "namespace", &ns)["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["object"].as_str())
        .collect();
    for object in [
        "Pod Security labels",
        "RoleBinding paas-operator-tenant",
        "ServiceAccount paas-tenant",
        "RoleBinding paas-tenant",
    ] {
        assert!(missing.contains(&object), "{object}: {missing:?}");
    }
    for (subdomain, scheme, owner, kind) in [
        (&earlier.app, "generated", &earlier.n8n, "app"),
        (&earlier.mcp, "generated-mcp", &earlier.n8n, "mcp"),
        (&earlier.platform, "platform", &earlier.web, "app"),
    ] {
        let route = finding(&dry["routes"], "hostname", &double.hostname(subdomain));
        assert_eq!(route["scheme"], scheme, "{route}");
        assert_eq!(route["owner"], format!("{ns}/{owner}"), "{route}");
        assert_eq!(route["kind"], kind, "{route}");
        assert_eq!(route["cname"], "earlier", "{route}");
        assert_eq!(route["action"], "adopt", "{route}");
    }
    let sidecar = finding(&dry["sidecars"], "release", &earlier.n8n);
    assert_eq!(sidecar["container"], "mcp-sidecar");
    assert_eq!(sidecar["deployment"], format!("{}-n8n", earlier.n8n));
    assert_eq!(sidecar["action"], "adopt", "{sidecar}");
    let service = finding(&dry["services"], "name", &format!("{}-mcp", earlier.n8n));
    assert_eq!(service["action"], "adopt", "{service}");
    assert_untouched(&op, &double, &earlier).await;

    // --apply, as the operator: adopted.
    let applied = migrate(major, &double, &ns, As::Operator, &["--apply"]).await;
    eprintln!("--- migrate --apply ---\n{applied}");
    assert!(applied.contains("Changed ("), "{applied}");
    assert_adopted(&op, &double, &earlier).await;

    // Again: nothing to do.
    let again = migrate_json(major, &double, &ns, As::Operator, true).await;
    assert_eq!(again["changed"], json!([]), "{again}");
    assert_eq!(again["failed"], json!([]), "{again}");
    for list in ["namespaces", "routes", "sidecars", "services"] {
        assert_eq!(again[list], json!([]), "{list}: {again}");
    }
    assert_eq!(revision(&op, &ns, &earlier.n8n).await, 2);

    // The operator serves the migrated releases: uninstall with the
    // platform's subdomain removes the adopted routes and CNAMEs.
    for (release, query) in [
        (&earlier.web, format!("?subdomain={}", earlier.platform)),
        (&earlier.n8n, String::new()),
    ] {
        let (status, body) = op
            .call(
                Method::DELETE,
                &format!("/api/releases/{ns}/{release}{query}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    for subdomain in earlier.subdomains() {
        let hostname = double.hostname(subdomain);
        assert_eq!(double.rule_for(&hostname).await, None, "{hostname}");
        assert!(double.dns(&hostname).await.is_empty(), "{hostname}");
        assert!(record(&op, subdomain).await.is_none(), "{subdomain}");
    }
    double.assert_foreign_rule_and_catch_all_kept().await;
    unseed(&double, &earlier.subdomains()).await;
}
crate::both_helms!(migrate_what_the_earlier_operator_left_exposure);

/// After the dry run: nothing of ours is there yet.
async fn assert_untouched(op: &Operator, double: &Double, earlier: &Earlier) {
    let ns = &earlier.namespace;
    let namespace = Api::<Namespace>::all(op.kube.clone())
        .get(ns)
        .await
        .expect("ns");
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels.keys().cloned().collect::<Vec<_>>(),
        ["kubernetes.io/metadata.name", "paas-managed"]
    );
    assert!(
        Api::<RoleBinding>::namespaced(op.kube.clone(), ns)
            .get_opt("paas-operator-tenant")
            .await
            .expect("read")
            .is_none()
    );
    for subdomain in earlier.subdomains() {
        assert!(record(op, subdomain).await.is_none(), "{subdomain}");
        let records = double.dns(&double.hostname(subdomain)).await;
        assert!(records[0]["comment"].is_null(), "{records:?}");
    }
    assert_eq!(
        containers(op, ns, &format!("{}-n8n", earlier.n8n)).await,
        ["n8n", "mcp-sidecar"]
    );
    let history = history_len(ns, &earlier.n8n).await;
    assert_eq!(history, 1, "no revision made by the dry run");
}

/// After `--apply`: every tenant object, the quota exactly as it was, the
/// routes recorded as their releases' with our CNAMEs, the sidecar kept in
/// revision 2 with its Service Helm's.
async fn assert_adopted(op: &Operator, double: &Double, earlier: &Earlier) {
    let ns = &earlier.namespace;
    let client = op.kube.clone();
    let namespace = Api::<Namespace>::all(client.clone())
        .get(ns)
        .await
        .expect("ns");
    let labels = namespace.metadata.labels.unwrap_or_default();
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
    for binding in ["paas-operator-tenant", "paas-tenant"] {
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .get(binding)
            .await
            .unwrap_or_else(|e| panic!("{binding}: {e}"));
    }
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get("paas-tenant")
        .await
        .expect("tenant account");
    Api::<LimitRange>::namespaced(client.clone(), ns)
        .get(&format!("{ns}-defaults"))
        .await
        .expect("limit range");
    Api::<NetworkPolicy>::namespaced(client.clone(), ns)
        .get(&format!("{ns}-isolation"))
        .await
        .expect("isolation");
    let hard: BTreeMap<String, String> = Api::<ResourceQuota>::namespaced(client.clone(), ns)
        .get(&format!("{ns}-quota"))
        .await
        .expect("quota")
        .spec
        .and_then(|s| s.hard)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    assert_eq!(hard, earlier.quota, "the quota is left as it was");

    for (subdomain, owner, kind) in [
        (&earlier.app, &earlier.n8n, "app"),
        (&earlier.mcp, &earlier.n8n, "mcp"),
        (&earlier.platform, &earlier.web, "app"),
    ] {
        let data = record(op, subdomain)
            .await
            .and_then(|m: ConfigMap| m.data)
            .unwrap_or_else(|| panic!("no record of {subdomain}"));
        assert_eq!(data["release"], owner.as_str());
        assert_eq!(data["namespace"], ns.as_str());
        assert_eq!(data["kind"], kind);
        assert_eq!(data["applied"], "true");
        let records = double.dns(&double.hostname(subdomain)).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0]["comment"], "paas-operator route");
        assert_eq!(
            data["dns_record_id"],
            records[0]["id"].as_str().unwrap_or_default()
        );
    }

    let n8n = &earlier.n8n;
    assert_eq!(revision(op, ns, n8n).await, 2);
    assert_eq!(history_len(ns, n8n).await, 2);
    assert_eq!(
        containers(op, ns, &format!("{n8n}-n8n")).await,
        ["n8n", "mcp-sidecar"],
        "the sidecar once"
    );
    let service = Api::<Service>::namespaced(client.clone(), ns)
        .get(&format!("{n8n}-mcp"))
        .await
        .expect("mcp service");
    let annotations = service.metadata.annotations.unwrap_or_default();
    assert_eq!(annotations["meta.helm.sh/release-name"], n8n.as_str());
    let selector = service.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(
        selector.get("paas-operator/sidecar-of"),
        Some(&format!("{n8n}-n8n"))
    );
    let (status, route) = op
        .call(
            Method::GET,
            &format!("/api/releases/{ns}/{}", earlier.web),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        route["route"]["hostname"],
        double.hostname(&earlier.platform),
        "the adopted route is the release's route"
    );
}

/// The release's revisions, counted from Helm's records (admin).
async fn history_len(namespace: &str, release: &str) -> usize {
    let kube = crate::harness::admin_client().await.expect("admin");
    let records = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(kube, namespace)
        .list(&kube::api::ListParams::default().labels(&format!("owner=helm,name={release}")))
        .await
        .expect("records");
    records.items.len()
}

/// Without any migration: uninstalling a release the earlier operator gave
/// a sidecar removes its MCP route `{release}-{suffix}-mcp` with the CNAME
/// and its `{release}-mcp` Service, with `?subdomain=` (the platform's
/// name, which the earlier operator never used for the MCP route) and
/// without (then its default app route `{release}-{suffix}` goes too);
/// deleting a namespace removes its releases' MCP routes. A look-alike
/// into another namespace stays.
async fn uninstall_removes_the_earlier_mcp_route_and_service_exposure(major: Major) {
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let args = cloudflare_args(&double);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = Operator::start(major, &args).await;
    let earlier = seed(&mut op, &double, major).await;
    let ns = earlier.namespace.clone();
    let suffix = ns.trim_start_matches("paas-ws-").to_owned();
    let services = Api::<Service>::namespaced(op.kube.clone(), &ns);
    let mcp_service = |release: &str| format!("{release}-mcp");

    // The n8n release, with the platform's subdomain: its MCP route, CNAME
    // and Service go; its app route under another name stays.
    let platform = format!("paas-cs-{:08x}", rand::rng().random::<u32>());
    let path = format!("/api/releases/{ns}/{}?subdomain={platform}", earlier.n8n);
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_gone(&double, &earlier.mcp).await;
    let service = services.get_opt(&mcp_service(&earlier.n8n)).await;
    assert!(service.expect("read").is_none(), "the earlier Service went");
    assert!(
        double
            .rule_for(&double.hostname(&earlier.app))
            .await
            .is_some()
    );

    // The web release given an MCP route and Service too, uninstalled
    // without ?subdomain=: its routes at the earlier operator's names go.
    let web_app = format!("{}-{suffix}", earlier.web);
    let web_mcp = format!("{web_app}-mcp");
    let into = |service: &str, port: u16| format!("http://{service}.{ns}.svc.cluster.local:{port}");
    seed_routes(
        &double,
        &[
            (&web_app, into(&format!("{}-web", earlier.web), 80)),
            (&web_mcp, into(&mcp_service(&earlier.web), 3000)),
        ],
    )
    .await;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": mcp_service(&earlier.web), "labels": {
            "app.kubernetes.io/instance": earlier.web, "app.kubernetes.io/component": "mcp-sidecar"}},
        "spec": {"selector": {"app.kubernetes.io/instance": earlier.web}, "ports": [{"port": 3000, "name": "mcp"}]}
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("created");
    let path = format!("/api/releases/{ns}/{}", earlier.web);
    let (status, body) = op.call(Method::DELETE, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_gone(&double, &web_app).await;
    assert_gone(&double, &web_mcp).await;
    let service = services.get_opt(&mcp_service(&earlier.web)).await;
    assert!(service.expect("read").is_none());

    // A release of ours with an earlier-style MCP route, and a look-alike
    // into another namespace; the namespace deleted: the first goes.
    let third = random_release();
    let install =
        json!({"namespace": ns, "name": third, "chart": oci_chart("web"), "version": "0.1.0"});
    let (status, body) = op.call(Method::POST, "/api/releases", Some(install)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let third_mcp = format!("{third}-{suffix}-mcp");
    let elsewhere = format!("{third}-mcp");
    seed_routes(
        &double,
        &[
            (&third_mcp, into(&mcp_service(&third), 3000)),
            (
                &elsewhere,
                format!("http://{third}-mcp.paas-ws-someone.svc.cluster.local:3000"),
            ),
        ],
    )
    .await;
    let (status, body) = op
        .call(Method::DELETE, &format!("/api/namespaces/{ns}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_gone(&double, &third_mcp).await;
    assert!(
        double
            .rule_for(&double.hostname(&elsewhere))
            .await
            .is_some(),
        "another namespace's route is not this release's"
    );
    double.assert_foreign_rule_and_catch_all_kept().await;
    let mut all = earlier.subdomains().to_vec();
    all.extend([
        web_app.as_str(),
        web_mcp.as_str(),
        third_mcp.as_str(),
        elsewhere.as_str(),
    ]);
    unseed(&double, &all).await;
}
crate::both_helms!(uninstall_removes_the_earlier_mcp_route_and_service_exposure);

/// No rule and no CNAME left at `subdomain`.
async fn assert_gone(double: &Double, subdomain: &str) {
    let hostname = double.hostname(subdomain);
    assert_eq!(double.rule_for(&hostname).await, None, "{hostname}");
    assert!(
        double.dns(&hostname).await.is_empty(),
        "CNAME of {hostname}"
    );
}

/// A release of the earlier operator, not migrated, gets the platform's
/// sidecar request again (with another auth token): the sidecar it patched
/// in becomes the release's (once), its `{release}-mcp` Service Helm's; the
/// same request again is the same revision.
async fn an_earlier_release_takes_the_sidecar_again_exposure(major: Major) {
    let _exclusive = DOUBLE.write().await;
    let double = Double::new();
    let args = cloudflare_args(&double);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut op = Operator::start(major, &args).await;
    let earlier = seed(&mut op, &double, major).await;
    let (ns, n8n) = (earlier.namespace.clone(), earlier.n8n.clone());
    let mut container = sidecar_container(&n8n);
    container["env"][1]["value"] = json!("0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a");
    let body = json!({"deployment_name": format!("{n8n}-n8n"), "container": container});
    let path = format!("/api/releases/{ns}/{n8n}/sidecar");
    for _ in 0..2 {
        let (status, answer) = op.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["revision"], 2, "{answer}");
        assert_eq!(revision(&op, &ns, &n8n).await, 2);
        assert_eq!(history_len(&ns, &n8n).await, 2);
    }
    let deployment = Api::<Deployment>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{n8n}-n8n"))
        .await
        .expect("deployment");
    let sidecars: Vec<_> = deployment
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.name == "mcp-sidecar")
        .collect();
    assert_eq!(sidecars.len(), 1);
    let token = sidecars[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "AUTH_TOKEN")
        .and_then(|e| e.value.clone());
    assert_eq!(
        token.as_deref(),
        Some("0d9c8b7a-6f5e-4d3c-2b1a-0f9e8d7c6b5a")
    );
    let service = Api::<Service>::namespaced(op.kube.clone(), &ns)
        .get(&format!("{n8n}-mcp"))
        .await
        .expect("mcp service");
    let annotations = service.metadata.annotations.unwrap_or_default();
    assert_eq!(annotations["meta.helm.sh/release-name"], n8n.as_str());
    let (status, body) = op
        .call(Method::DELETE, &format!("/api/namespaces/{ns}"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    unseed(&double, &earlier.subdomains()).await;
}
crate::both_helms!(an_earlier_release_takes_the_sidecar_again_exposure);
