//! The objects every tenant namespace holds, as server-side-apply bodies:
//! pure functions of the policy, tested without a cluster. Each carries the
//! operator's label, which admission protects from the tenant itself.

use serde_json::{Value, json};

use super::quota::TenantQuota;
use crate::config::TenantConfig;
use crate::render::confine::OPERATOR_LABEL;

/// Label marking namespaces this operator manages.
pub const MANAGED_LABEL: &str = "paas-managed";

/// Name of the RoleBinding that gives the operator its rights in a tenant.
pub const OPERATOR_BINDING: &str = "paas-operator-tenant";

pub fn namespace_body(name: &str, policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": name, "labels": {
            MANAGED_LABEL: "true",
            "pod-security.kubernetes.io/enforce": policy.psa_enforce.as_str(),
            "pod-security.kubernetes.io/enforce-version": "latest",
            "pod-security.kubernetes.io/warn": policy.psa_warn.as_str(),
            "pod-security.kubernetes.io/audit": policy.psa_warn.as_str(),
        }},
    })
}

pub fn role_binding_body(policy: &TenantConfig) -> Option<Value> {
    let role = policy.tenant_cluster_role.trim();
    let (sa_namespace, sa_name) = policy.operator_service_account.split_once('/')?;
    if role.is_empty() {
        return None;
    }
    Some(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": OPERATOR_BINDING, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role },
        "subjects": [{ "kind": "ServiceAccount", "name": sa_name, "namespace": sa_namespace }],
    }))
}

/// The ServiceAccount helm runs as in the namespace.
pub fn tenant_account_body(policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": { "name": policy.tenant_service_account, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        // Nothing runs under it but helm: no token in any pod.
        "automountServiceAccountToken": false,
    })
}

/// Binds what charts may create (the tenant helm role) to that ServiceAccount.
pub fn tenant_binding_body(namespace: &str, policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": { "name": policy.tenant_service_account, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        "roleRef": { "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": policy.tenant_helm_role },
        "subjects": [{ "kind": "ServiceAccount", "name": policy.tenant_service_account, "namespace": namespace }],
    })
}

pub fn limit_range_body(name: &str, policy: &TenantConfig) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": { "name": name, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        "spec": { "limits": [{
            "type": "Container",
            "default": { "cpu": policy.default_cpu_limit, "memory": policy.default_memory_limit },
            "defaultRequest": { "cpu": policy.default_cpu_request, "memory": policy.default_memory_request },
            // Requests and limits below these are refused, so tiny pods
            // cannot pack a node (the quota's `pods` bounds their number).
            "min": { "cpu": policy.container_min_cpu, "memory": policy.container_min_memory },
        }]},
    })
}

/// Isolation: the tenant's pods take traffic from the namespace itself and
/// from `admitted` namespaces only (the ingress controller's, the
/// platform's, the operator's), never from other tenants.
pub fn network_policy_body(name: &str, admitted: &[String]) -> Value {
    let allowed = admitted;
    let mut from = vec![json!({ "podSelector": {} })];
    if !allowed.is_empty() {
        from.push(json!({ "namespaceSelector": { "matchExpressions": [
            { "key": "kubernetes.io/metadata.name", "operator": "In", "values": allowed }
        ]}}));
    }
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": name, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        "spec": { "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{ "from": from }] },
    })
}

pub fn quota_body(quota_name: &str, quota: &TenantQuota) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": { "name": quota_name, "labels": { OPERATOR_LABEL.0: OPERATOR_LABEL.1 } },
        "spec": { "hard": {
            "requests.cpu": quota.cpu.as_str(),
            "limits.cpu": quota.cpu.as_str(),
            "requests.memory": quota.memory.as_str(),
            "limits.memory": quota.memory.as_str(),
            "requests.storage": quota.storage.as_str(),
            "persistentvolumeclaims": quota.counts.pvcs.to_string(),
            // Pod slots of the nodes and objects in etcd: Helm keeps a
            // Secret per revision, so `count/secrets` bounds history too.
            "pods": quota.counts.pods.to_string(),
            "services": quota.counts.services.to_string(),
            "count/secrets": quota.counts.secrets.to_string(),
            "count/configmaps": quota.counts.configmaps.to_string(),
        }},
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::names::Quantity;
    use crate::tenants::ObjectCounts;

    fn policy() -> TenantConfig {
        crate::config::Config::parse_from(["paas-operator"]).tenant
    }

    #[test]
    fn default_quota_is_the_contracts_with_object_counts() {
        let quota = TenantQuota::default_quota(ObjectCounts::from_policy(&policy()));
        assert_eq!(
            (
                quota.cpu.as_str(),
                quota.memory.as_str(),
                quota.storage.as_str()
            ),
            ("2", "4Gi", "20Gi")
        );
        let hard = &quota_body("q", &quota)["spec"]["hard"];
        assert_eq!(hard["persistentvolumeclaims"], "10");
        assert_eq!(hard["pods"], "20");
        assert_eq!(hard["services"], "20");
        assert_eq!(hard["count/secrets"], "100");
        assert_eq!(hard["count/configmaps"], "50");
    }

    #[test]
    fn containers_have_minimums_below_the_defaults() {
        let limits = limit_range_body("x", &policy());
        let limit = &limits["spec"]["limits"][0];
        assert_eq!(limit["min"]["cpu"], "10m");
        assert_eq!(limit["min"]["memory"], "16Mi");
        // The API server refuses a LimitRange whose default is under its min.
        assert_eq!(limit["defaultRequest"]["cpu"], "100m");
    }

    #[test]
    fn namespace_carries_psa_labels() {
        let body = namespace_body("paas-ws-1", &policy());
        let labels = &body["metadata"]["labels"];
        assert_eq!(labels["paas-managed"], "true");
        assert_eq!(labels["pod-security.kubernetes.io/enforce"], "baseline");
        assert_eq!(labels["pod-security.kubernetes.io/warn"], "restricted");
    }

    #[test]
    fn binding_and_isolation() {
        let binding = role_binding_body(&policy()).unwrap();
        assert_eq!(binding["roleRef"]["name"], "paas-operator-tenant");
        assert_eq!(binding["subjects"][0]["namespace"], "paas-system");
        let mut none = policy();
        none.tenant_cluster_role = String::new();
        assert!(role_binding_body(&none).is_none());
        let admitted = policy().network_allowed_namespaces.items().to_vec();
        let netpol = network_policy_body("x", &admitted);
        assert_eq!(
            netpol["spec"]["ingress"][0]["from"][1]["namespaceSelector"]["matchExpressions"][0]["values"]
                [0],
            "kube-system"
        );
        let limits = limit_range_body("x", &policy());
        assert_eq!(limits["spec"]["limits"][0]["defaultRequest"]["cpu"], "100m");
    }

    #[test]
    fn tenant_identity_is_bound_to_the_tenant_role_only_in_its_namespace() {
        let account = tenant_account_body(&policy());
        assert_eq!(account["metadata"]["name"], "paas-tenant");
        assert_eq!(account["automountServiceAccountToken"], false);
        assert_eq!(
            account["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "paas-operator"
        );
        let binding = tenant_binding_body("paas-ws-1", &policy());
        assert_eq!(binding["kind"], "RoleBinding");
        assert_eq!(binding["roleRef"]["name"], "paas-tenant");
        assert_eq!(binding["subjects"][0]["name"], "paas-tenant");
        assert_eq!(binding["subjects"][0]["namespace"], "paas-ws-1");
    }

    #[test]
    fn quota_matches_the_earlier_operator() {
        let quota = TenantQuota {
            cpu: Quantity::parse("cpu_limit", "8").unwrap(),
            memory: Quantity::parse("memory_limit", "16Gi").unwrap(),
            storage: Quantity::parse("storage_limit", "100Gi").unwrap(),
            counts: ObjectCounts {
                pods: 40,
                services: 5,
                secrets: 60,
                configmaps: 30,
                pvcs: 3,
            },
        };
        let body = quota_body("paas-ws-1-quota", &quota);
        let hard = &body["spec"]["hard"];
        assert_eq!(hard["requests.cpu"], "8");
        assert_eq!(hard["limits.cpu"], "8");
        assert_eq!(hard["requests.memory"], "16Gi");
        assert_eq!(hard["limits.memory"], "16Gi");
        assert_eq!(hard["requests.storage"], "100Gi");
        assert_eq!(hard["persistentvolumeclaims"], "3");
        assert_eq!(hard["pods"], "40");
        assert_eq!(hard["services"], "5");
        assert_eq!(hard["count/secrets"], "60");
        assert_eq!(hard["count/configmaps"], "30");
    }
}
