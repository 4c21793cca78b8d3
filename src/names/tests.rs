//! Unit tests of the validated input types.

use super::*;

fn policy() -> ChartPolicy {
    ChartPolicy {
        allowed_sources: vec!["*".into()],
        plain_http_registries: vec!["127.0.0.1:5000".into()],
        allow_http: false,
        fetch_hosts: Vec::new(),
    }
}

#[test]
fn namespaces() {
    assert!(TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").is_ok());
    for bad in [
        "",
        "PAAS-ws-1",
        "paas-ws-",
        "paas-ws-a_b",
        "-paas-ws-1",
        "paas-ws-1-",
        &"paas-ws-".repeat(9),
    ] {
        assert!(TenantNamespace::parse(bad, "paas-ws-").is_err(), "{bad}");
    }
    assert!(matches!(
        TenantNamespace::parse("kube-system", "paas-ws-"),
        Err(ValidationError::NamespaceOutsidePrefix { .. })
    ));
    assert!(matches!(
        TenantNamespace::parse("../etc", "paas-ws-"),
        Err(ValidationError::NamespaceSyntax(_))
    ));
}

#[test]
fn release_names() {
    for good in ["svc-1a2b3c4d", "a", "web.v2", &"a".repeat(53)] {
        assert!(ReleaseName::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "-x",
        "x-",
        "Web",
        "a..b",
        "a_b",
        "--post-renderer=/bin/sh",
        &"a".repeat(54),
        "a b",
    ] {
        assert!(ReleaseName::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn charts() {
    let p = policy();
    let oci = ChartRef::parse("oci://127.0.0.1:5000/charts/web", None, &p).unwrap();
    assert!(oci.plain_http(&p));
    let remote = ChartRef::parse(
        "oci://registry-1.docker.io/bitnamicharts/postgresql",
        None,
        &p,
    )
    .unwrap();
    assert!(!remote.plain_http(&p));
    assert!(ChartRef::parse("https://charts.example.com/web-1.0.0.tgz", None, &p).is_ok());
    let repo = ChartRef::parse("web", Some("https://charts.example.com/"), &p).unwrap();
    assert_eq!(
        repo,
        ChartRef::Repo {
            name: "web".into(),
            repo_url: "https://charts.example.com".into()
        }
    );
    for bad in [
        "",
        "-f",
        "--post-renderer",
        "/etc/passwd",
        "./chart",
        "web",
        "file:///etc",
        "http://x/y.tgz",
        "oci://",
        "oci://host",
        "oci://ho st/x",
        "oci://host/../x",
        "oci://host/x@sha256:00",
        "oci://-host/x",
        "oci://host:port/x",
    ] {
        assert!(ChartRef::parse(bad, None, &p).is_err(), "{bad}");
    }
    assert!(ChartRef::parse("../web", Some("https://x"), &p).is_err());
    assert!(ChartRef::parse("web", Some("file:///tmp"), &p).is_err());
    assert!(ChartRef::parse("web", Some("http://127.0.0.1:8879"), &p).is_err());
    let http = ChartPolicy {
        allow_http: true,
        ..policy()
    };
    assert!(ChartRef::parse("web", Some("http://127.0.0.1:8879"), &http).is_ok());
}

#[test]
fn chart_allow_list_matches_whole_path_segments() {
    let p = ChartPolicy {
        allowed_sources: vec![
            "oci://registry-1.docker.io/bitnamicharts".into(),
            "https://charts.example.com/stable/".into(),
        ],
        ..policy()
    };
    for good in [
        "oci://registry-1.docker.io/bitnamicharts/postgresql",
        "oci://REGISTRY-1.docker.io/bitnamicharts/sub/chart",
        "https://charts.example.com/stable/web-1.0.0.tgz",
    ] {
        assert!(ChartRef::parse(good, None, &p).is_ok(), "{good}");
    }
    for bad in [
        "oci://registry-1.docker.io/bitnamichartsx/evil",
        "oci://registry-1.docker.io/other/postgresql",
        "oci://registry-1.docker.io.evil.example/bitnamicharts/x",
        "oci://evil.example/charts/web",
        "https://charts.example.com/stablex/web.tgz",
        "https://charts.example.com:8443/stable/web.tgz",
    ] {
        let err = ChartRef::parse(bad, None, &p).unwrap_err();
        assert!(
            matches!(err, ValidationError::ChartSourceNotAllowed(_)),
            "{bad}"
        );
    }
    // A classic repository is matched by its URL.
    assert!(ChartRef::parse("web", Some("https://charts.example.com/stable"), &p).is_ok());
    assert!(ChartRef::parse("web", Some("https://charts.example.com/unstable"), &p).is_err());
    assert_eq!(
        p.allowed_hosts(),
        Some(vec![
            "charts.example.com".to_owned(),
            "registry-1.docker.io".to_owned()
        ])
    );
    let any = ChartPolicy {
        allowed_sources: vec!["*".into()],
        ..policy()
    };
    assert!(ChartRef::parse("oci://anything.example/x/y", None, &any).is_ok());
    assert_eq!(any.allowed_hosts(), None);
    let none = ChartPolicy {
        allowed_sources: vec![],
        ..policy()
    };
    assert!(ChartRef::parse("oci://anything.example/x/y", None, &none).is_err());
}

#[test]
fn versions() {
    for good in [
        "1.2.3",
        "v1.2.3",
        "1.2.3-rc.1+build.5",
        "^1.2",
        "~0.1",
        ">=1.0.0, <2.0.0",
        "1.x",
        "*",
    ] {
        assert!(ChartVersion::parse(good).is_ok(), "{good}");
    }
    for bad in ["", "-1", "--devel", "latest", "1.2.3; rm -rf /", "a.b.c"] {
        assert!(ChartVersion::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn quantities() {
    for good in [
        "2", "500m", "4Gi", "0.5", "1e3", "100Gi", "16Gi", "8", "1.5Ki",
    ] {
        assert!(Quantity::parse("cpu_limit", good).is_ok(), "{good}");
    }
    for bad in [
        "", "-1", "2 cores", "4GB", "1..2", ".", "Gi", "1e", "1e1234", "1;rm",
    ] {
        assert!(Quantity::parse("cpu_limit", bad).is_err(), "{bad}");
    }
}

#[test]
fn object_counts_are_whole_numbers_in_range() {
    assert_eq!(object_count("pods_limit", 1), Ok(1));
    assert_eq!(object_count("pods_limit", 10_000), Ok(10_000));
    for bad in [0, -1, 10_001, i64::MAX] {
        let error = object_count("pods_limit", bad).unwrap_err();
        assert!(matches!(error, ValidationError::ObjectCount { .. }));
        assert_eq!(
            error.to_string(),
            format!("pods_limit {bad} is not a whole number from 1 to 10000")
        );
    }
}

#[test]
fn long_values_are_truncated_in_messages() {
    let err = ReleaseName::parse(&"x".repeat(1000)).unwrap_err();
    assert!(err.to_string().len() < 300);
}
