//! What the earlier (Python) operator left beside a release: a sidecar it
//! patched into the release's Deployment with `kubectl patch` (a container
//! the live Deployment has and the release's stored manifest lacks), and the
//! Service `{release}-mcp` it made outside Helm (labelled
//! `app.kubernetes.io/component=mcp-sidecar`). The migration finds and
//! adopts them into the release; uninstall removes such a Service.
//!
//! Chart objects are read and changed as the tenant (impersonated), as helm
//! does: the operator's own identity holds no chart kinds. An identity that
//! may read them itself (an admin running the migration) reads directly.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::ReleaseService;
use super::sidecar::Attached;
use super::sidecar_spec::AttachSidecar;
use crate::auth::KeyId;
use crate::error::{ApiError, Code};
use crate::helm::HelmRelease;
use crate::kube::KubeError;
use crate::model::apps::SidecarRequest;
use crate::names::{ReleaseName, TenantNamespace};
use crate::render::additions::{SIDECAR_LABEL, Sidecar, deployments};
use crate::render::confine::Rules;

/// The label the earlier operator put on its `{release}-mcp` Services.
pub const COMPONENT_LABEL: (&str, &str) = ("app.kubernetes.io/component", "mcp-sidecar");
/// Helm's annotation naming the release that owns an object.
const HELM_RELEASE_NAME: &str = "meta.helm.sh/release-name";
const HELM_RELEASE_NAMESPACE: &str = "meta.helm.sh/release-namespace";

/// A container in a release's live Deployment that its stored manifest lacks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PatchedSidecar {
    pub deployment: String,
    pub container: String,
    pub image: String,
    /// The live container as a sidecar request (`deployment_name` set).
    #[serde(skip)]
    pub request: Value,
}

/// A Service labelled as an MCP sidecar's that Helm does not manage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LooseService {
    pub name: String,
    /// Its `app.kubernetes.io/instance` label: the release it served.
    pub release: Option<String>,
}

impl ReleaseService {
    /// The latest revision of every release in `namespace`.
    pub async fn latest_releases(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Vec<HelmRelease>, ApiError> {
        let mut releases = Vec::new();
        for name in self.release_names(namespace).await? {
            if let Some(release) = self.latest_direct(namespace, &name).await? {
                releases.push(release);
            }
        }
        Ok(releases)
    }

    /// The containers of `release`'s live Deployments that its latest
    /// revision does not render: sidecars patched in by hand.
    pub async fn patched_sidecars(
        &self,
        namespace: &TenantNamespace,
        release: &HelmRelease,
    ) -> Result<Vec<PatchedSidecar>, ApiError> {
        let rendered = rendered_containers(&release.manifest);
        if rendered.is_empty() {
            return Ok(Vec::new());
        }
        let live: Vec<Deployment> = self
            .chart_objects(namespace, &ListParams::default())
            .await?;
        let mut found = Vec::new();
        for deployment in live {
            let name = deployment.metadata.name.clone().unwrap_or_default();
            let Some(own) = rendered.get(&name) else {
                continue;
            };
            let containers = deployment
                .spec
                .and_then(|s| s.template.spec)
                .map(|s| s.containers)
                .unwrap_or_default();
            found.extend(
                containers
                    .iter()
                    .filter(|c| !own.contains(&c.name))
                    .map(|c| patched(&name, c)),
            );
        }
        Ok(found)
    }

    /// Services in `namespace` labelled as an MCP sidecar's that Helm does
    /// not manage (the earlier operator's `{release}-mcp`).
    pub async fn loose_mcp_services(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Vec<LooseService>, ApiError> {
        let params =
            ListParams::default().labels(&format!("{}={}", COMPONENT_LABEL.0, COMPONENT_LABEL.1));
        let services: Vec<Service> = self.chart_objects(namespace, &params).await?;
        Ok(services
            .into_iter()
            .filter(|s| !helm_managed(s))
            .map(|s| LooseService {
                name: s.metadata.name.clone().unwrap_or_default(),
                release: label(&s, "app.kubernetes.io/instance"),
            })
            .collect())
    }

    /// Takes a patched sidecar into its release, as `POST …/sidecar` does
    /// (kept, and a new revision that renders it and its Service, the
    /// earlier operator's `{release}-mcp` handed to Helm).
    pub async fn adopt_sidecar(
        &self,
        key: &KeyId,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        patched: &PatchedSidecar,
    ) -> Result<Attached, ApiError> {
        let request = patched.sidecar_request(name)?;
        self.attach_sidecar(key, namespace, name, request).await
    }

    /// The release that owns Service `service` of `namespace` (by Helm's
    /// annotation or its `app.kubernetes.io/instance` label), when it is
    /// one of `releases`.
    pub async fn service_owner(
        &self,
        namespace: &TenantNamespace,
        service: &str,
        releases: &[HelmRelease],
    ) -> Result<Option<ReleaseName>, ApiError> {
        let params = ListParams::default().fields(&format!("metadata.name={service}"));
        let found: Vec<Service> = self.chart_objects(namespace, &params).await?;
        let Some(service) = found.first() else {
            return Ok(None);
        };
        let helm_owner = service
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(HELM_RELEASE_NAME))
            .cloned();
        let owner = [helm_owner, label(service, "app.kubernetes.io/instance")]
            .into_iter()
            .flatten()
            .find(|candidate| releases.iter().any(|r| r.name == *candidate));
        Ok(owner.and_then(|name| ReleaseName::parse(&name).ok()))
    }

    /// After an uninstall: the earlier operator's `{release}-mcp` Service,
    /// when it is still there, labelled as that release's MCP Service and
    /// not Helm's, is deleted (as the tenant).
    pub(super) async fn remove_earlier_mcp_service(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) {
        if let Err(error) = self.delete_loose_service(namespace, name).await {
            tracing::warn!(%namespace, release = %name, code = %error.code, "the earlier operator's MCP Service could not be removed");
        }
    }

    async fn delete_loose_service(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<(), ApiError> {
        let service_name = format!("{name}-mcp");
        let services = Api::<Service>::namespaced(self.client.clone(), namespace.as_str());
        let found = services
            .get_opt(&service_name)
            .await
            .map_err(KubeError::api("reading the MCP Service"))?;
        if !found.is_some_and(|s| is_earlier_service(&s, name)) {
            return Ok(());
        }
        let tenant =
            Api::<Service>::namespaced(self.tenants.as_tenant(namespace)?, namespace.as_str());
        match tenant.delete(&service_name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(%namespace, release = %name, service = %service_name, "the earlier operator's MCP Service removed");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(KubeError::Api {
                action: "deleting the earlier operator's MCP Service",
                source,
            }
            .into()),
        }
    }

    /// Before a sidecar is attached to a release of the earlier operator:
    /// what it made for its sidecar is handed to Helm, so the revision that
    /// renders the sidecar takes it over instead of failing on an existing
    /// object (Helm 3) or on fields another manager set differently (Helm
    /// 4's server-side apply). Nothing happens for a release without them.
    pub(super) async fn hand_earlier_sidecar_to_helm(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        sidecar: &Sidecar,
    ) -> Result<(), ApiError> {
        let latest = self.require_latest(namespace, name).await?;
        let documents = Rules::parse_only(&latest.rendering()).unwrap_or_default();
        let Some((deployment, service)) = sidecar.rendered(&documents, name.as_str()) else {
            // No Deployment to attach to: the attach fails on its own.
            return Ok(());
        };
        if let Some(service) = service {
            self.hand_service(namespace, name, &service).await?;
        }
        let rendered = rendered_containers(&latest.manifest);
        let own = rendered.get(&deployment).cloned().unwrap_or_default();
        self.hand_container(namespace, &deployment, &own, sidecar)
            .await
    }

    /// The earlier operator's `{release}-mcp` Service (labelled as this
    /// release's MCP Service, not Helm's) gets Helm's ownership labels and
    /// annotations for the release and the selector it is rendered with.
    /// Any other Service of that name is left alone.
    async fn hand_service(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        rendered: &Value,
    ) -> Result<(), ApiError> {
        let service_name = format!("{name}-mcp");
        let found = Api::<Service>::namespaced(self.client.clone(), namespace.as_str())
            .get_opt(&service_name)
            .await
            .map_err(KubeError::api("reading the MCP Service"))?;
        let Some(earlier) = found.filter(|s| is_earlier_service(s, name)) else {
            return Ok(());
        };
        // A merge patch merges maps: keys of the old selector go (null).
        let mut selector = rendered["spec"]["selector"].clone();
        let old = earlier.spec.and_then(|s| s.selector).unwrap_or_default();
        for key in old.keys() {
            if selector.get(key).is_none() {
                selector[key] = Value::Null;
            }
        }
        let patch = json!({
            "metadata": {
                "labels": {"app.kubernetes.io/managed-by": "Helm"},
                "annotations": {HELM_RELEASE_NAME: name.as_str(), HELM_RELEASE_NAMESPACE: namespace.as_str()},
            },
            "spec": {"selector": selector},
        });
        let tenant =
            Api::<Service>::namespaced(self.tenants.as_tenant(namespace)?, namespace.as_str());
        tenant
            .patch(&service_name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(KubeError::api("handing the MCP Service to Helm"))?;
        tracing::info!(%namespace, release = %name, service = %service_name, "the earlier operator's MCP Service handed to Helm");
        Ok(())
    }

    /// A container of the sidecar's name that the earlier operator patched
    /// into the live Deployment (the stored manifest, `own`, lacks it) is
    /// set to the sidecar as it will be rendered, with its pod label, so
    /// Helm finds its fields already so.
    async fn hand_container(
        &self,
        namespace: &TenantNamespace,
        deployment: &str,
        own: &[String],
        sidecar: &Sidecar,
    ) -> Result<(), ApiError> {
        let container = sidecar.container["name"].as_str().unwrap_or_default();
        if own.iter().any(|c| c == container) {
            return Ok(());
        }
        let tenant = self.tenants.as_tenant(namespace)?;
        let deployments = Api::<Deployment>::namespaced(tenant, namespace.as_str());
        let Some(live) = deployments
            .get_opt(deployment)
            .await
            .map_err(KubeError::api("reading the release's Deployment"))?
        else {
            return Ok(());
        };
        let containers: Vec<Value> = live
            .spec
            .and_then(|s| s.template.spec)
            .map(|s| s.containers)
            .unwrap_or_default()
            .iter()
            .map(|c| serde_json::to_value(c).unwrap_or_default())
            .collect();
        if !containers.iter().any(|c| c["name"] == container) {
            return Ok(());
        }
        // A merge patch replaces lists whole: the live containers, the
        // patched one replaced.
        let replaced: Vec<Value> = containers
            .into_iter()
            .map(|c| {
                if c["name"] == container {
                    sidecar.container.clone()
                } else {
                    c
                }
            })
            .collect();
        let patch = json!({"spec": {"template": {
            "metadata": {"labels": {SIDECAR_LABEL: deployment}},
            "spec": {"containers": replaced},
        }}});
        deployments
            .patch(deployment, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(KubeError::api("handing the patched sidecar to Helm"))?;
        tracing::info!(%namespace, %deployment, %container, "the earlier operator's patched sidecar handed to Helm");
        Ok(())
    }

    /// Lists chart objects of `namespace`: as the operator when it may,
    /// else as the tenant.
    async fn chart_objects<K>(
        &self,
        namespace: &TenantNamespace,
        params: &ListParams,
    ) -> Result<Vec<K>, ApiError>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let list = |client: Client| async move {
            Api::<K>::namespaced(client, namespace.as_str())
                .list(params)
                .await
                .map(|l| l.items)
        };
        match list(self.client.clone()).await {
            Ok(items) => return Ok(items),
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(source) => {
                return Err(KubeError::Api {
                    action: "reading the release's objects",
                    source,
                }
                .into());
            }
        }
        let tenant = self.tenants.as_tenant(namespace)?;
        Ok(list(tenant).await.map_err(KubeError::api(
            "reading the release's objects as the tenant",
        ))?)
    }
}

/// The container names of every Deployment a manifest renders.
fn rendered_containers(manifest: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(mut checked) = Rules::parse_only(manifest) else {
        return BTreeMap::new();
    };
    deployments(&mut checked.documents)
        .into_iter()
        .map(|d| {
            let name = d
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let containers = d
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.get("name").and_then(Value::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            (name, containers)
        })
        .collect()
}

/// A live container as the sidecar request that would attach it: only the
/// fields a sidecar may have (what the API server filled in, such as
/// `terminationMessagePath`, is left out).
fn patched(deployment: &str, container: &Container) -> PatchedSidecar {
    let live = serde_json::to_value(container).unwrap_or_default();
    let mut request = Map::new();
    for field in [
        "name",
        "image",
        "env",
        "resources",
        "livenessProbe",
        "readinessProbe",
        "command",
        "args",
        "imagePullPolicy",
    ] {
        if let Some(value) = live.get(field).filter(|v| !v.is_null()) {
            request.insert(field.to_owned(), value.clone());
        }
    }
    if let Some(Value::Array(ports)) = live.get("ports") {
        let ports: Vec<Value> = ports
            .iter()
            .map(|p| {
                let mut port = Map::new();
                for field in ["containerPort", "name", "protocol"] {
                    if let Some(value) = p.get(field).filter(|v| !v.is_null()) {
                        port.insert(field.to_owned(), value.clone());
                    }
                }
                Value::Object(port)
            })
            .collect();
        request.insert("ports".to_owned(), Value::Array(ports));
    }
    PatchedSidecar {
        deployment: deployment.to_owned(),
        container: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        request: json!({"deployment_name": deployment, "container": request}),
    }
}

impl PatchedSidecar {
    /// The sidecar request that attaches it, when it is a sidecar we accept.
    pub fn sidecar_request(&self, release: &ReleaseName) -> Result<AttachSidecar, ApiError> {
        let request: SidecarRequest = serde_json::from_value(self.request.clone())
            .map_err(|error| ApiError::new(Code::InvalidSidecar, error.to_string()))?;
        Ok(AttachSidecar::parse(request, release)?)
    }
}

/// The earlier operator's `{release}-mcp`: labelled as the release's MCP
/// Service, and not Helm's.
fn is_earlier_service(service: &Service, release: &ReleaseName) -> bool {
    !helm_managed(service)
        && label(service, COMPONENT_LABEL.0).as_deref() == Some(COMPONENT_LABEL.1)
        && label(service, "app.kubernetes.io/instance").as_deref() == Some(release.as_str())
}

fn helm_managed(service: &Service) -> bool {
    service
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(HELM_RELEASE_NAME))
}

fn label(service: &Service, key: &str) -> Option<String> {
    service.metadata.labels.as_ref()?.get(key).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubectl_patched_container_becomes_the_platforms_sidecar_request() {
        // As the API server returns the earlier operator's JSON-patched
        // container: defaults filled in.
        let live: Container = serde_json::from_value(json!({
            "name": "mcp-sidecar", "image": "ghcr.io/czlonkowski/n8n-mcp:latest",
            "ports": [{"containerPort": 3000, "protocol": "TCP"}],
            "env": [{"name": "MCP_MODE", "value": "http"},
                    {"name": "N8N_API_KEY", "valueFrom": {"secretKeyRef": {"name": "svc-a-n8n-app-secret", "key": "N8N_API_KEY"}}}],
            "resources": {"limits": {"cpu": "200m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "livenessProbe": {"httpGet": {"path": "/health", "port": 3000, "scheme": "HTTP"},
                              "initialDelaySeconds": 15, "periodSeconds": 30, "timeoutSeconds": 1,
                              "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
            "imagePullPolicy": "Always"
        }))
        .unwrap();
        let found = patched("svc-a-n8n", &live);
        assert_eq!(found.container, "mcp-sidecar");
        let request: SidecarRequest =
            serde_json::from_value(found.request.clone()).expect("a request");
        assert_eq!(request.deployment_name.as_deref(), Some("svc-a-n8n"));
        assert_eq!(request.container.ports[0].container_port, 3000);
        let release = ReleaseName::parse("svc-a").unwrap();
        let attach = found
            .sidecar_request(&release)
            .expect("accepted as a sidecar");
        assert_eq!(attach.container_name, "mcp-sidecar");
        assert_eq!(
            attach.sidecar.container["env"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn only_containers_the_manifest_does_not_render_are_patched_ones() {
        let manifest = "---\n{\"apiVersion\": \"apps/v1\", \"kind\": \"Deployment\", \"metadata\": {\"name\": \"svc-a-n8n\"}, \"spec\": {\"template\": {\"spec\": {\"containers\": [{\"name\": \"n8n\", \"image\": \"n8n\"}]}}}}\n";
        assert_eq!(
            rendered_containers(manifest),
            BTreeMap::from([("svc-a-n8n".to_owned(), vec!["n8n".to_owned()])])
        );
    }
}
