//! Tenant namespaces the earlier operator made (labelled only
//! `paas-managed=true`, holding its `{ns}-quota` and nothing else of ours):
//! what they lack of this operator's tenant objects, and their adoption by
//! the migration — every object put in place, an existing quota never
//! changed.

use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::ListParams;
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::objects::OPERATOR_BINDING;
use super::{MANAGED_LABEL, PSA_ENFORCE_LABEL, TenantQuota, TenantService, is_managed};
use crate::kube::KubeError;
use crate::kube::apply::retry_forbidden;
use crate::names::TenantNamespace;

/// Whether one tenant object is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Present,
    Missing,
    /// This identity may not read it (the operator has no rights in a
    /// namespace it has not set up).
    Unreadable,
}

/// One object a tenant namespace should hold, and whether it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantObject {
    /// Kind and name, e.g. `LimitRange paas-ws-1-defaults`.
    pub object: String,
    pub presence: Presence,
}

impl TenantService {
    /// The namespaces with the tenant prefix this operator manages or would
    /// adopt: labelled `paas-managed=true`, or (with `ADOPT_NAMESPACES`)
    /// not labelled at all; terminating ones left out.
    pub async fn tenant_namespaces(&self) -> Result<Vec<(TenantNamespace, Namespace)>, KubeError> {
        let listed = Api::<Namespace>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(KubeError::api("listing namespaces"))?;
        let prefix = &self.policy.namespace_prefix;
        Ok(listed
            .items
            .into_iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_none())
            .filter(|ns| is_managed(ns) || (self.policy.adopt_namespaces && !labelled(ns)))
            .filter_map(|ns| {
                let name = TenantNamespace::parse(ns.metadata.name.as_deref()?, prefix).ok()?;
                Some((name, ns))
            })
            .collect())
    }

    /// What `namespace` holds of the objects every tenant namespace has.
    pub async fn tenant_objects(
        &self,
        namespace: &TenantNamespace,
        existing: &Namespace,
    ) -> Vec<TenantObject> {
        let name = namespace.as_str();
        let account = &self.policy.tenant_service_account;
        let label = |key: &str, what: &str| TenantObject {
            object: what.to_owned(),
            presence: if existing
                .metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(key))
            {
                Presence::Present
            } else {
                Presence::Missing
            },
        };
        let mut objects = vec![
            label(MANAGED_LABEL, "label paas-managed=true"),
            label(PSA_ENFORCE_LABEL, "Pod Security labels"),
        ];
        let client = &self.client;
        if super::objects::role_binding_body(&self.policy).is_some() {
            objects.push(presence::<RoleBinding>(client, name, OPERATOR_BINDING).await);
        }
        objects.push(presence::<ServiceAccount>(client, name, account).await);
        objects.push(presence::<RoleBinding>(client, name, account).await);
        objects.push(presence::<LimitRange>(client, name, &format!("{name}-defaults")).await);
        objects.push(presence::<NetworkPolicy>(client, name, &format!("{name}-isolation")).await);
        objects.push(presence::<ResourceQuota>(client, name, &format!("{name}-quota")).await);
        objects
    }

    /// Sets up a namespace the earlier operator made: the operator's own
    /// RoleBinding first (it has no rights there before), then every tenant
    /// object by server-side apply. An existing quota is left exactly as it
    /// is; a missing one is made with the contract's defaults.
    pub async fn adopt(&self, namespace: &TenantNamespace) -> Result<(), KubeError> {
        self.apply_operator_binding(namespace).await?;
        let name = namespace.as_str();
        let quotas = Api::<ResourceQuota>::namespaced(self.client.clone(), name);
        let quota_name = format!("{name}-quota");
        let existing = retry_forbidden(|| async {
            quotas
                .get_opt(&quota_name)
                .await
                .map_err(KubeError::api("reading the resource quota"))
        })
        .await?;
        let default = TenantQuota::default_quota(self.default_counts());
        let quota = existing.is_none().then_some(&default);
        self.apply_all(namespace, quota).await
    }

    /// A client acting as the tenant's helm identity in `namespace` (what a
    /// chart's own objects are read and changed as).
    pub fn as_tenant(&self, namespace: &TenantNamespace) -> Result<Client, KubeError> {
        let mut config = self.client_config.clone();
        config.auth_info.impersonate = Some(self.helm_user(namespace));
        crate::kube::throttle::client(crate::kube::for_requests(config))
            .map_err(KubeError::api("impersonating the tenant"))
    }
}

fn labelled(namespace: &Namespace) -> bool {
    namespace
        .metadata
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(MANAGED_LABEL))
}

/// Whether the object `name` of kind `K` is in `namespace`.
async fn presence<K>(client: &Client, namespace: &str, name: &str) -> TenantObject
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let object = format!("{} {name}", K::kind(&()));
    let presence = match Api::<K>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
    {
        Ok(Some(_)) => Presence::Present,
        Ok(None) => Presence::Missing,
        Err(error) => {
            tracing::debug!(%namespace, %object, %error, "cannot read a tenant object");
            Presence::Unreadable
        }
    };
    TenantObject { object, presence }
}
