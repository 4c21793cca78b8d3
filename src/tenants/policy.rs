//! The cluster-wide half of tenant isolation — the ClusterRole charts run
//! with (`paas-tenant`) and the admission policies that protect each
//! tenant's limits, Helm's records and the helm identity — is
//! `k8s/tenant-policy.yaml`, deployed with the operator. The same file is
//! built into the binary: at start, when the operator's identity may manage
//! those objects (a developer's admin kubeconfig, say), it applies them, so
//! isolation holds even where nobody applied the file; where it may not (the
//! least-privilege ServiceAccount), they are the deployment's business and
//! are left alone.
//!
//! The scheduling policy's allowed lists (priority classes, taint keys,
//! runtime classes) are put in from the operator's settings before it is
//! applied, so admission and the operator's own early check
//! (`crate::render::confine`) allow the same.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde::Deserialize;

use crate::config::TenantConfig;
use crate::kube::KubeError;
use crate::kube::apply::FIELD_MANAGER;

/// The deployment's tenant policy, as shipped in `k8s/`.
const TENANT_POLICY: &str = include_str!("../../k8s/tenant-policy.yaml");

/// What the start did with the cluster policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyState {
    /// Applied (created or brought up to date) by the operator.
    Applied(usize),
    /// The operator may not manage it: the deployment applies it.
    NotOurs,
}

/// The admission policy of the scheduling fences, and its variables that
/// hold the allowed lists.
const SCHEDULING_POLICY: &str = "paas-tenant-scheduling";

/// Applies the built-in tenant policy when the operator may.
pub async fn ensure_cluster_policy(
    client: &Client,
    settings: &TenantConfig,
) -> Result<PolicyState, KubeError> {
    let mut objects = policy_objects().map_err(|_| KubeError::PolicyUnreadable)?;
    put_allowed_lists(&mut objects, settings)?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = 0;
    for object in &objects {
        let gvk = object
            .types
            .as_ref()
            .and_then(|t| GroupVersionKind::try_from(t).ok())
            .ok_or(KubeError::PolicyUnreadable)?;
        let resource = ApiResource::from_gvk_with_plural(&gvk, &plural(&gvk.kind));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let name = object.metadata.name.clone().unwrap_or_default();
        match api.patch(&name, &params, &Patch::Apply(object)).await {
            Ok(_) => applied += 1,
            Err(kube::Error::Api(status)) if status.code == 403 => return Ok(PolicyState::NotOurs),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "applying the tenant policy",
                    source,
                });
            }
        }
    }
    Ok(PolicyState::Applied(applied))
}

fn policy_objects() -> Result<Vec<DynamicObject>, serde_yaml_ng::Error> {
    serde_yaml_ng::Deserializer::from_str(TENANT_POLICY)
        .map(DynamicObject::deserialize)
        .filter(|object| !matches!(object, Ok(o) if o.types.is_none()))
        .collect()
}

/// Writes the settings' allowed lists into the scheduling policy's
/// variables, as CEL list literals (the settings hold only name
/// characters, checked when they were read).
fn put_allowed_lists(
    objects: &mut [DynamicObject],
    settings: &TenantConfig,
) -> Result<(), KubeError> {
    let lists = [
        ("allowedPriorityClasses", &settings.allowed_priority_classes),
        ("allowedTolerationKeys", &settings.allowed_toleration_keys),
        ("allowedRuntimeClasses", &settings.allowed_runtime_classes),
    ];
    let policy = objects
        .iter_mut()
        .find(|o| o.metadata.name.as_deref() == Some(SCHEDULING_POLICY))
        .ok_or(KubeError::PolicyUnreadable)?;
    let variables = policy
        .data
        .pointer_mut("/spec/variables")
        .and_then(serde_json::Value::as_array_mut)
        .ok_or(KubeError::PolicyUnreadable)?;
    for (name, list) in lists {
        let variable = variables
            .iter_mut()
            .find(|v| v["name"] == name)
            .ok_or(KubeError::PolicyUnreadable)?;
        let literal =
            serde_json::to_string(list.items()).map_err(|_| KubeError::PolicyUnreadable)?;
        variable["expression"] = serde_json::Value::String(literal);
    }
    Ok(())
}

/// The resource name of the kinds the policy holds (English plurals of
/// these kinds are regular).
fn plural(kind: &str) -> String {
    let kind = kind.to_ascii_lowercase();
    match kind.strip_suffix('y') {
        Some(stem) => format!("{stem}ies"),
        None => format!("{kind}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_policy_is_the_shipped_file_and_reads() {
        let objects = policy_objects().expect("k8s/tenant-policy.yaml reads");
        let kinds: Vec<(String, String)> = objects
            .iter()
            .map(|o| {
                let types = o.types.clone().expect("types");
                (types.kind, o.metadata.name.clone().expect("name"))
            })
            .collect();
        assert!(
            kinds.contains(&("ClusterRole".into(), "paas-tenant".into())),
            "{kinds:?}"
        );
        let policies = kinds
            .iter()
            .filter(|(k, _)| k == "ValidatingAdmissionPolicy")
            .count();
        let bindings = kinds
            .iter()
            .filter(|(k, _)| k == "ValidatingAdmissionPolicyBinding")
            .count();
        assert!(policies >= 8 && policies == bindings, "{kinds:?}");
        assert_eq!(
            plural("ValidatingAdmissionPolicy"),
            "validatingadmissionpolicies"
        );
        assert_eq!(
            plural("ValidatingAdmissionPolicyBinding"),
            "validatingadmissionpolicybindings"
        );
        assert_eq!(plural("ClusterRole"), "clusterroles");
    }

    #[test]
    fn the_scheduling_policy_gets_the_settings_lists() {
        use clap::Parser;
        let settings = crate::config::Config::parse_from([
            "paas-operator",
            "--allowed-priority-classes",
            "tenant-low, tenant-high",
        ])
        .tenant;
        let mut objects = policy_objects().expect("reads");
        let variable = |objects: &[DynamicObject], name: &str| {
            let policy = objects
                .iter()
                .find(|o| o.metadata.name.as_deref() == Some(SCHEDULING_POLICY))
                .expect("scheduling policy");
            policy.data["spec"]["variables"]
                .as_array()
                .expect("variables")
                .iter()
                .find(|v| v["name"] == name)
                .expect("variable")["expression"]
                .clone()
        };
        // As shipped: what the settings' defaults say.
        assert_eq!(variable(&objects, "allowedPriorityClasses"), "[]");
        put_allowed_lists(&mut objects, &settings).expect("put");
        assert_eq!(
            variable(&objects, "allowedPriorityClasses"),
            r#"["tenant-low","tenant-high"]"#
        );
        assert_eq!(
            variable(&objects, "allowedTolerationKeys"),
            r#"["node.kubernetes.io/not-ready","node.kubernetes.io/unreachable"]"#
        );
        assert_eq!(variable(&objects, "allowedRuntimeClasses"), "[]");
        // A name that could end a CEL string never gets this far.
        let refused = crate::config::Config::try_parse_from([
            "paas-operator",
            "--allowed-runtime-classes",
            "a\"] + ['b",
        ]);
        assert!(refused.is_err());
    }
}
