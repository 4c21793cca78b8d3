//! Unit tests of the error codes and of what the lower layers' errors answer.

use super::*;

#[test]
fn unavailable_carries_retry_after() {
    let response = ApiError::new(Code::OperatorBusy, "try later").into_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()[header::RETRY_AFTER], "10");
    let response = ApiError::new(Code::ReleaseExists, "x").into_response();
    assert!(response.headers().get(header::RETRY_AFTER).is_none());
}

#[test]
fn display_names_status_and_code() {
    let error = ApiError::release_not_found("ns", "gone");
    assert_eq!(
        error.to_string(),
        "404 release_not_found: Release ns/gone not found"
    );
}

#[test]
fn every_code_is_listed_once_with_a_snake_case_name() {
    let names: std::collections::HashSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), Code::ALL.len());
    for name in names {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{name}"
        );
    }
    assert_eq!(Code::NamespaceNotManaged.as_str(), "namespace_not_managed");
    assert_eq!(Code::NamespaceNotManaged.status(), StatusCode::FORBIDDEN);
    // The wire name, the table's name and the schema agree.
    let schema = serde_json::to_value(<Code as utoipa::PartialSchema>::schema()).unwrap();
    let listed = schema["enum"].as_array().unwrap();
    assert_eq!(listed.len(), Code::ALL.len());
    for (code, listed) in Code::ALL.iter().zip(listed) {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        assert_eq!(listed, code.as_str());
    }
}

#[test]
fn validation_errors_answer_400_with_their_field_code() {
    let cases = [
        (
            ValidationError::NamespaceSyntax("A".into()),
            Code::InvalidNamespace,
        ),
        (
            ValidationError::NamespaceOutsidePrefix {
                name: "kube-system".into(),
                prefix: "paas-ws-".into(),
            },
            Code::InvalidNamespace,
        ),
        (
            ValidationError::ReleaseName("A".into()),
            Code::InvalidReleaseName,
        ),
        (
            ValidationError::Chart("x".into(), "why"),
            Code::InvalidChart,
        ),
        (
            ValidationError::ChartSourceNotAllowed("x".into()),
            Code::ChartSourceNotAllowed,
        ),
        (
            ValidationError::RepoUrl("x".into(), "why"),
            Code::InvalidRepoUrl,
        ),
        (ValidationError::Version("x".into()), Code::InvalidVersion),
        (
            ValidationError::Quantity {
                field: "cpu_limit",
                value: "x".into(),
            },
            Code::InvalidQuantity,
        ),
        (
            ValidationError::ObjectCount {
                field: "pods_limit",
                value: 0,
            },
            Code::InvalidQuantity,
        ),
    ];
    for (error, code) in cases {
        let detail = error.to_string();
        let answer = ApiError::from(error);
        assert_eq!(
            (answer.code, answer.status()),
            (code, StatusCode::BAD_REQUEST)
        );
        assert_eq!(answer.detail, detail);
    }
}

#[test]
fn an_api_server_not_answering_is_503_kubernetes_unavailable() {
    let answer = ApiError::from(KubeError::NotAnswering);
    assert_eq!(answer.code, Code::KubernetesUnavailable);
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        answer.detail,
        "The Kubernetes API is not answering; try again shortly"
    );
}

/// A write refused because its namespace is being deleted is 409
/// `namespace_terminating`, not a missing permission of the operator; any
/// other 403 stays `operator_forbidden`.
#[test]
fn a_namespace_being_deleted_is_not_a_missing_permission() {
    // The API server's answer, as it sends it.
    let refused = |reason: &str| {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403,
            "reason": "Forbidden",
            "message": "leases.coordination.k8s.io \"x\" is forbidden: unable to create new content in namespace paas-ws-x because it is being terminated",
            "details": {"name": "x", "group": "coordination.k8s.io", "kind": "leases",
                "causes": [{"reason": reason, "message": "namespace paas-ws-x is being terminated",
                    "field": "metadata.namespace"}]}
        }))
        .expect("status");
        ApiError::from(KubeError::api("creating a lease")(kube::Error::Api(
            Box::new(status),
        )))
    };
    let terminating = refused("NamespaceTerminating");
    assert_eq!(terminating.code, Code::NamespaceTerminating);
    assert_eq!(terminating.code.status(), StatusCode::CONFLICT);
    assert_eq!(refused("SomethingElse").code, Code::OperatorForbidden);
}
