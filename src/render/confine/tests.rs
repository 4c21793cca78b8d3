//! Unit tests of the confinement rules: escapes, strict parsing, isolation, scheduling fences, reserved names, refusals.

use super::*;

fn rules() -> Rules {
    Rules {
        confine: true,
        namespace: "paas-ws-1".into(),
        allowed_cluster_kinds: HashSet::new(),
        cluster_scoped: [
            (String::new(), "Namespace".to_owned()),
            (
                "rbac.authorization.k8s.io".to_owned(),
                "ClusterRole".to_owned(),
            ),
        ]
        .into_iter()
        .collect(),
        tenant_account: "paas-tenant".into(),
        release: "svc-a".into(),
        additions: Default::default(),
        scheduling: SchedulingRules {
            priority_classes: vec!["tenant-low".into()],
            toleration_keys: vec![
                "node.kubernetes.io/not-ready".into(),
                "node.kubernetes.io/unreachable".into(),
            ],
            runtime_classes: Vec::new(),
        },
    }
}

fn problems(rendered: &str) -> Vec<Violation> {
    rules().check(rendered)
}

#[test]
fn finds_escapes_in_manifest_and_hooks() {
    let rendered = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: same\n  namespace: paas-ws-1\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: away\n  namespace: default\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: wide\n---\n# Source: hooks\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: evil\n";
    assert_eq!(
        problems(rendered),
        [
            Violation::OutsideNamespace { document: 3 },
            Violation::ClusterScoped { document: 4 },
            Violation::ClusterScoped { document: 5 },
        ]
    );
    let mut allowed = rules();
    allowed.allowed_cluster_kinds = ["ClusterRole".to_owned(), "Namespace".to_owned()].into();
    assert_eq!(allowed.check(rendered).len(), 1);
}

#[test]
fn what_passes_is_re_emitted_as_json_exactly() {
    let rendered = "# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  annotations:\n    postrenderer.helm.sh/postrender-filename: 'c/templates/cm.yaml'\ndata:\n  on: yes\n  n: \"0777\"\n  t: \"{{ x }}\"\n---\n# nothing\n";
    let checked = rules().apply(rendered).expect("confined");
    assert_eq!(checked.documents.len(), 1);
    let stream = checked.to_yaml_stream();
    assert_eq!(
        stream,
        "---\n{\"apiVersion\":\"v1\",\"data\":{\"n\":\"0777\",\"on\":\"yes\",\"t\":\"{{ x }}\"},\"kind\":\"ConfigMap\",\"metadata\":{\"annotations\":{\"postrenderer.helm.sh/postrender-filename\":\"c/templates/cm.yaml\"},\"name\":\"a\"}}\n"
    );
    // What is emitted reads back as the same documents.
    assert_eq!(rules().apply(&stream).expect("again"), checked);
    assert_eq!(
        rules().apply(" \n").expect("empty").to_yaml_stream(),
        "# no objects\n"
    );
}

#[test]
fn merge_keys_and_tags_are_refused_wherever_they_are() {
    let cases = [
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: paas-ws-1\n  <<: {namespace: victim}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  <<: {<<: {namespace: victim}}\n",
        "apiVersion: v1\nkind: ConfigMap\n<<: {kind: Namespace}\nmetadata: {name: a}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: !x default\n",
        "apiVersion: v1\nkind: !Secret ConfigMap\nmetadata: {name: t}\n",
    ];
    for case in cases {
        assert_eq!(
            problems(case),
            [Violation::Ambiguous { document: 1 }],
            "{case}"
        );
    }
    // YAML's own core tags mean what they say, and are emitted as plain data.
    let core = rules().apply("apiVersion: v1\nkind: !!str ConfigMap\nmetadata: {name: t}\n");
    assert_eq!(core.expect("core tag").documents[0]["kind"], "ConfigMap");
    // Aliases are expanded and re-emitted: helm sees the plain values.
    let aliased = "apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: a}\ndata: {copy: *m}\n";
    let checked = rules().apply(aliased).expect("aliases are plain data");
    assert_eq!(checked.documents[0]["data"]["copy"]["name"], "a");
    let escaping =
        "apiVersion: v1\nkind: ConfigMap\nx: &ns victim\nmetadata: {name: a, namespace: *ns}\n";
    assert_eq!(
        problems(escaping),
        [Violation::OutsideNamespace { document: 1 }]
    );
}

#[test]
fn large_real_renderings_stay_within_the_budget() {
    // 600 components of Deployment, Service and ConfigMap (1.8 MB), as
    // a large chart renders them.
    let mut rendered = String::new();
    for i in 0..600 {
        let labels = format!(
            "app.kubernetes.io/name: comp-{i}\n    app.kubernetes.io/instance: x\n    app.kubernetes.io/version: \"1.0\"\n    app.kubernetes.io/managed-by: Helm\n    helm.sh/chart: large-0.1.0"
        );
        rendered.push_str(&format!("---\n# Source: large/templates/all.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x-{i}\n  labels:\n    {labels}\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: comp-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: comp-{i}\n    spec:\n      containers:\n      - name: c\n        image: \"nginx:1.27\"\n        env:\n        - {{name: A, value: \"1\"}}\n        - {{name: B, value: \"2\"}}\n        resources:\n          limits: {{cpu: 100m, memory: 64Mi}}\n        ports:\n        - {{containerPort: 8080, name: http}}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: x-{i}\n  labels:\n    {labels}\nspec:\n  selector: {{app.kubernetes.io/name: comp-{i}}}\n  ports: [{{port: 80, targetPort: http}}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x-{i}\ndata:\n  config.yaml: |\n"));
        for j in 0..40 {
            rendered.push_str(&format!(
                "    key{j}: value-{j}-comp-{i}-abcdefghijklmnop\n"
            ));
        }
    }
    assert!(rendered.len() > 1_700_000, "{}", rendered.len());
    let checked = rules().apply(&rendered).expect("a large real chart passes");
    assert_eq!(checked.documents.len(), 1800);
    let stream = checked.to_yaml_stream();
    assert!(stream.len() < MAX_RENDERING);
    // What the checker prints reads back the same (the fast path).
    assert_eq!(rules().apply(&stream).expect("again"), checked);
    // One-line YAML flow mappings are not JSON: read as YAML.
    let flow = "{apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n";
    assert_eq!(rules().apply(flow).expect("flow").documents.len(), 1);
}

#[test]
fn list_items_are_checked_one_by_one() {
    let list = "apiVersion: v1\nkind: List\nitems:\n  - apiVersion: v1\n    kind: ConfigMap\n    metadata: {name: inner, namespace: default}\n  - apiVersion: v1\n    kind: ConfigMapList\n    items:\n      - {apiVersion: v1, kind: Namespace, metadata: {name: deep}}\n";
    assert_eq!(
        problems(list),
        [
            Violation::OutsideNamespace { document: 1 },
            Violation::ClusterScoped { document: 1 }
        ]
    );
    let disguised = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nitems: [{apiVersion: v1, kind: Namespace, metadata: {name: n}}]\n";
    assert_eq!(problems(disguised).len(), 1);
    let not_a_list = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nitems: 3\n";
    assert_eq!(
        problems(not_a_list),
        [Violation::Unreadable { document: 1 }]
    );
}

#[test]
fn unreadable_documents_fail_closed() {
    // A duplicate key: which value wins is up to the parser, so refuse.
    let duplicate = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: paas-ws-1\n  namespace: default\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: after}\n";
    assert_eq!(problems(duplicate), [Violation::Unreadable { document: 2 }]);
    assert_eq!(
        problems("just text\n"),
        [Violation::Unreadable { document: 1 }]
    );
    let huge = "#".repeat(MAX_INPUT + 1);
    assert_eq!(problems(&huge), [Violation::TooLarge]);
}

#[test]
fn what_undoes_isolation_is_refused() {
    let cases = [
        (
            "apiVersion: v1\nkind: Secret\ntype: helm.sh/release.v1\nmetadata: {name: sh.helm.release.v1.a.v2, labels: {owner: helm, name: a}}\n",
            Violation::HelmRecord { document: 1 },
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, labels: {owner: helm}}\n",
            Violation::HelmRecord { document: 1 },
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, labels: {app.kubernetes.io/managed-by: paas-operator}}\n",
            Violation::OperatorLabel { document: 1 },
        ),
        (
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {serviceAccountName: paas-tenant, containers: [{name: c, image: i}]}}}\n",
            Violation::TenantIdentity { document: 1 },
        ),
        (
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: c}\nspec: {jobTemplate: {spec: {template: {spec: {serviceAccount: paas-tenant, containers: []}}}}}\n",
            Violation::TenantIdentity { document: 1 },
        ),
        (
            "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\nmetadata: {name: t, annotations: {kubernetes.io/service-account.name: paas-tenant}}\n",
            Violation::TenantIdentity { document: 1 },
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {externalIPs: [1.2.3.4], ports: [{port: 80}]}\n",
            Violation::ServiceExposure { document: 1 },
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: ExternalName, externalName: db.other.svc.cluster.local}\n",
            Violation::ServiceExposure { document: 1 },
        ),
        (
            "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {type: NodePort, ports: [{port: 80}]}\n",
            Violation::ServiceExposure { document: 1 },
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, annotations: {nginx.ingress.kubernetes.io/server-snippet: x}}\n",
            Violation::IngressReach { document: 1 },
        ),
        (
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, annotations: {nginx.ingress.kubernetes.io/auth-tls-secret: victim/s}}\n",
            Violation::IngressReach { document: 1 },
        ),
    ];
    for (rendered, expected) in cases {
        assert_eq!(problems(rendered), [expected], "{rendered}");
    }
    let own = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, annotations: {nginx.ingress.kubernetes.io/auth-tls-secret: paas-ws-1/s}}\n";
    assert!(problems(own).is_empty());
    let fine = "apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {app.kubernetes.io/managed-by: Helm}}\nspec: {ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Secret\ntype: Opaque\nmetadata: {name: s}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: {spec: {serviceAccountName: app, containers: []}}}\n";
    assert!(problems(fine).is_empty());
}

#[test]
fn pods_keep_to_the_schedulers_fences() {
    let pod = |spec: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {{{spec}containers: [{{name: c, image: i}}]}}\n"
        )
    };
    let deployment = |spec: &str| {
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d}}\nspec: {{template: {{spec: {{{spec}containers: [{{name: c, image: i}}]}}}}}}\n"
        )
    };
    let cronjob = |spec: &str| {
        format!(
            "apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: c}}\nspec: {{jobTemplate: {{spec: {{template: {{spec: {{{spec}containers: [{{name: c, image: i}}]}}}}}}}}}}\n"
        )
    };
    let refused = [
        "priorityClassName: system-node-critical, ",
        "priorityClassName: system-cluster-critical, ",
        "priorityClassName: tenant-high, ",
        "nodeName: node-1, ",
        "tolerations: [{operator: Exists}], ",
        "tolerations: [{key: '', operator: Exists}], ",
        "tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}], ",
        "tolerations: [{key: CriticalAddonsOnly, operator: Exists}], ",
        "schedulerName: my-scheduler, ",
        "runtimeClassName: kata, ",
    ];
    for spec in refused {
        for rendered in [pod(spec), deployment(spec), cronjob(spec)] {
            assert_eq!(
                problems(&rendered),
                [Violation::Scheduling { document: 1 }],
                "{rendered}"
            );
        }
    }
    let allowed = [
        "",
        "priorityClassName: tenant-low, ",
        "schedulerName: default-scheduler, ",
        // What Kubernetes adds to every pod itself.
        "tolerations: [{key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 300}, {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 300}], ",
    ];
    for spec in allowed {
        for rendered in [pod(spec), deployment(spec), cronjob(spec)] {
            assert!(problems(&rendered).is_empty(), "{rendered}");
        }
    }
    // A listed class is still refused when it is a system one.
    let mut listed = rules();
    listed
        .scheduling
        .priority_classes
        .push("system-node-critical".into());
    assert_eq!(
        listed.check(&pod("priorityClassName: system-node-critical, ")),
        [Violation::Scheduling { document: 1 }]
    );
}

#[test]
fn probes_and_hooks_may_not_aim_at_a_host() {
    let cases = [
        "containers: [{name: c, image: i, livenessProbe: {httpGet: {host: 169.254.169.254, port: 80}}}]",
        "containers: [{name: c, image: i, readinessProbe: {tcpSocket: {host: 127.0.0.1, port: 10250}}}]",
        "containers: [{name: c, image: i}], initContainers: [{name: s, image: i, restartPolicy: Always, startupProbe: {httpGet: {host: kubernetes.default, port: 443}}}]",
        "containers: [{name: c, image: i, lifecycle: {preStop: {httpGet: {host: 10.0.0.1, port: 80}}}}]",
    ];
    for spec in cases {
        let rendered = format!(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: s}}\nspec: {{template: {{spec: {{{spec}}}}}}}\n"
        );
        assert_eq!(
            problems(&rendered),
            [Violation::HostReach { document: 1 }],
            "{rendered}"
        );
    }
    let own = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: i, livenessProbe: {httpGet: {path: /, port: 80}}, lifecycle: {preStop: {sleep: {seconds: 5}}}}]}\n";
    assert!(problems(own).is_empty());
}

#[test]
fn names_the_operator_reserves_are_refused() {
    for kind in ["Secret", "ConfigMap", "Deployment"] {
        let rendered =
            format!("apiVersion: v1\nkind: {kind}\nmetadata: {{name: paas-operator.svc-a}}\n");
        assert_eq!(
            problems(&rendered),
            [Violation::ReservedName { document: 1 }],
            "{rendered}"
        );
    }
    let lease =
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {name: paas-operator.svc-b}\n";
    assert_eq!(problems(lease), [Violation::ReservedName { document: 1 }]);
    // The release's sidecar Service, as a chart would squat it.
    let squat = "apiVersion: v1\nkind: Service\nmetadata: {name: svc-a-mcp}\nspec: {selector: {app: evil}, ports: [{port: 3000}]}\n";
    assert_eq!(problems(squat), [Violation::ReservedName { document: 1 }]);
    // The one the operator adds (in the stored documents of a release
    // with a sidecar) passes, and so do other releases' names.
    let sidecar = "apiVersion: v1\nkind: Service\nmetadata: {name: svc-a-mcp, labels: {app.kubernetes.io/instance: svc-a, app.kubernetes.io/component: mcp-sidecar}}\nspec: {type: ClusterIP, selector: {paas-operator/sidecar-of: svc-a-n8n}, ports: [{name: mcp, port: 3000}]}\n";
    assert!(problems(sidecar).is_empty());
    let other = "apiVersion: v1\nkind: Service\nmetadata: {name: svc-b-mcp}\nspec: {ports: [{port: 3000}]}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: paas-operator-config}\n";
    assert!(problems(other).is_empty());
    let sentence = refusal("paas-ws-1", &problems(squat));
    assert!(
        sentence.contains("named like what the operator keeps"),
        "{sentence}"
    );
}

#[test]
fn refusal_names_problems_and_counts_never_chart_text() {
    let found = problems(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s3cret-name, namespace: s3cret-ns}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: s3cret}\n",
    );
    let sentence = refusal("paas-ws-1", &found);
    assert_eq!(
        sentence,
        "The chart would create objects it may not in namespace paas-ws-1: 1 object cluster-scoped, 2 objects outside the release namespace; nothing was created"
    );
    assert!(!sentence.contains("s3cret"));
}

#[test]
fn cluster_scoped_lookup_by_group_and_kind() {
    let scopes = rules().cluster_scoped;
    assert!(scopes.is_cluster_scoped("v1", "Namespace"));
    assert!(scopes.is_cluster_scoped("rbac.authorization.k8s.io/v1", "ClusterRole"));
    assert!(!scopes.is_cluster_scoped("v1", "ConfigMap"));
    assert!(!scopes.is_cluster_scoped("example.com/v1", "ClusterRole"));
}

#[test]
fn rules_and_reports_round_trip_as_json() {
    let json = serde_json::to_string(&rules()).unwrap();
    assert_eq!(serde_json::from_str::<Rules>(&json).unwrap(), rules());
    let found = vec![
        Violation::ClusterScoped { document: 2 },
        Violation::TooLarge,
    ];
    let report = serde_json::to_string(&found).unwrap();
    assert_eq!(
        serde_json::from_str::<Vec<Violation>>(&report).unwrap(),
        found
    );
}
