//! The `ingress` backend: a Kubernetes Ingress per route, in the namespace
//! of the Service it routes to (the release's), named from the subdomain
//! (`paas-route-{subdomain}`), for `{subdomain}.{domain}`. It carries the
//! operator's label, so the tenant admission policy keeps the tenant's own
//! identities off it, and is applied with the operator's identity (not the
//! tenant's helm identity) by server-side apply.

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::DeleteParams;
use kube::{Api, Client};
use serde_json::{Value, json};

use crate::config::ExposureBackend;
use crate::exposure::backend::{Claim, RouteBackend};
use crate::exposure::error::RouteError;
use crate::exposure::names::{InputError, parse_cluster_service_url};
use crate::exposure::store::{
    NAMESPACE_LABEL, RELEASE_LABEL, ROUTE_LABEL, RouteRecord, RouteState, RouteStore,
};
use crate::kube::KubeError;
use crate::kube::apply::apply;
use crate::model::exposure::RouteRule;
use crate::render::confine::OPERATOR_LABEL;

/// How the Ingresses are made.
#[derive(Debug, Clone, Default)]
pub(crate) struct IngressSettings {
    /// `spec.ingressClassName`; empty = the cluster's default class.
    pub(crate) class: String,
    /// Extra annotations on every Ingress.
    pub(crate) annotations: Vec<(String, String)>,
    /// A TLS Secret for the host; empty = no `tls`.
    pub(crate) tls_secret: String,
}

/// Where a record's Ingress lives and points: namespace, Service, port.
fn target(record: &RouteRecord) -> Result<(String, String, u16), InputError> {
    let (service, namespace, port) = parse_cluster_service_url(&record.service_url).ok_or(
        InputError::ServiceUrl(
            record.service_url.clone(),
            "the ingress backend routes only to http://{service}.{namespace}.svc.cluster.local:{port}",
        ),
    )?;
    Ok((namespace, service, port))
}

/// The Ingress of a route (a server-side-apply body).
fn ingress_body(record: &RouteRecord, settings: &IngressSettings) -> Result<Value, InputError> {
    let (_, service, port) = target(record)?;
    let mut labels = json!({
        OPERATOR_LABEL.0: OPERATOR_LABEL.1,
        ROUTE_LABEL: "true",
    });
    if let Some(owner) = &record.owner {
        labels[NAMESPACE_LABEL] = Value::String(owner.namespace.clone());
        labels[RELEASE_LABEL] = Value::String(owner.name.clone());
    }
    let annotations: serde_json::Map<String, Value> = settings
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (path, path_type) = match &record.path {
        Some(path) => (path.as_str(), "ImplementationSpecific"),
        None => ("/", "Prefix"),
    };
    let mut spec = json!({
        "rules": [{
            "host": record.hostname,
            "http": { "paths": [{
                "path": path,
                "pathType": path_type,
                "backend": { "service": { "name": service, "port": { "number": port } } },
            }]},
        }],
    });
    if !settings.class.is_empty() {
        spec["ingressClassName"] = Value::String(settings.class.clone());
    }
    if !settings.tls_secret.is_empty() {
        spec["tls"] = json!([{ "hosts": [record.hostname], "secretName": settings.tls_secret }]);
    }
    Ok(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": RouteRecord::record_name(&record.subdomain),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }))
}

/// Ingresses for routes.
pub(crate) struct IngressRoutes {
    client: Client,
    settings: IngressSettings,
    /// The records, for the routes listed (an Ingress each).
    store: RouteStore,
}

impl IngressRoutes {
    pub(crate) fn new(client: Client, settings: IngressSettings, store: RouteStore) -> Self {
        Self {
            client,
            settings,
            store,
        }
    }

    /// Creates or updates the route's Ingress.
    async fn apply_ingress(&self, record: &RouteRecord) -> Result<Option<String>, RouteError> {
        let body = ingress_body(record, &self.settings)?;
        let (namespace, ..) = target(record)?;
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
        let name = RouteRecord::record_name(&record.subdomain);
        apply(&api, &name, body, "applying a route's Ingress").await?;
        Ok(None)
    }

    /// Deletes the route's Ingress; one already gone is fine.
    async fn remove_ingress(&self, record: &RouteRecord) -> Result<(), RouteError> {
        let Ok((namespace, ..)) = target(record) else {
            return Ok(());
        };
        let api: Api<Ingress> = Api::namespaced(self.client.clone(), &namespace);
        let name = RouteRecord::record_name(&record.subdomain);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(KubeError::Api {
                action: "deleting a route's Ingress",
                source,
            }
            .into()),
        }
    }

    /// The active routes of this backend, as rules.
    async fn active_rules(&self) -> Result<Vec<RouteRule>, RouteError> {
        Ok(self
            .store
            .list(None)
            .await?
            .into_iter()
            .filter(|r| r.state == RouteState::Active && r.backend == ExposureBackend::Ingress)
            .map(|r| RouteRule {
                hostname: Some(r.hostname),
                service: r.service_url,
                path: r.path,
            })
            .collect())
    }
}

impl RouteBackend for IngressRoutes {
    fn kind(&self) -> ExposureBackend {
        ExposureBackend::Ingress
    }

    /// An Ingress routes only to a Service in its own namespace: the
    /// release's.
    fn check_input(&self, record: &RouteRecord) -> Result<(), RouteError> {
        let (namespace, ..) = target(record)?;
        if record
            .owner
            .as_ref()
            .is_some_and(|o| o.namespace != namespace)
        {
            return Err(InputError::ServiceUrl(
                record.service_url.clone(),
                "not in the release's namespace",
            )
            .into());
        }
        Ok(())
    }

    /// An Ingress names its host; two Ingresses for one host are the
    /// controller's to merge, not a claim this operator can read.
    fn check_claim<'a>(&'a self, _: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>> {
        async { Ok(()) }.boxed()
    }

    /// Nothing is shared between routes.
    fn sync(&self) -> BoxFuture<'_, Result<(), RouteError>> {
        async { Ok(()) }.boxed()
    }

    fn apply<'a>(
        &'a self,
        record: &'a RouteRecord,
    ) -> BoxFuture<'a, Result<Option<String>, RouteError>> {
        self.apply_ingress(record).boxed()
    }

    fn remove<'a>(&'a self, record: &'a RouteRecord) -> BoxFuture<'a, Result<(), RouteError>> {
        self.remove_ingress(record).boxed()
    }

    /// Nothing beside the Ingresses, which reconciliation applies again.
    fn claims(&self) -> BoxFuture<'_, Result<Vec<Claim>, RouteError>> {
        async { Ok(Vec::new()) }.boxed()
    }

    fn drop_claim<'a>(&'a self, _: &'a Claim) -> BoxFuture<'a, Result<(), RouteError>> {
        async { Ok(()) }.boxed()
    }

    fn rules(&self) -> BoxFuture<'_, Result<Vec<RouteRule>, RouteError>> {
        self.active_rules().boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::names::Subdomain;
    use crate::exposure::store::{ReleaseRef, RouteKind};

    fn record() -> RouteRecord {
        RouteRecord {
            subdomain: Subdomain::parse("shop").unwrap(),
            hostname: "shop.apps.example.com".into(),
            service_url: "http://odoo.paas-ws-1.svc.cluster.local:8069".into(),
            path: None,
            owner: Some(ReleaseRef {
                namespace: "paas-ws-1".into(),
                name: "svc-1".into(),
            }),
            kind: RouteKind::App,
            backend: ExposureBackend::Ingress,
            state: RouteState::Active,
            applied: false,
            dns_record_id: None,
            version: None,
        }
    }

    #[test]
    fn ingress_routes_the_host_to_the_service() {
        let settings = IngressSettings {
            class: "nginx".into(),
            annotations: vec![("cert-manager.io/cluster-issuer".into(), "le".into())],
            tls_secret: "wildcard-tls".into(),
        };
        let body = ingress_body(&record(), &settings).unwrap();
        assert_eq!(body["metadata"]["name"], "paas-route-shop");
        assert_eq!(
            body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "paas-operator"
        );
        assert_eq!(body["metadata"]["labels"][RELEASE_LABEL], "svc-1");
        assert_eq!(
            body["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
            "le"
        );
        assert_eq!(body["spec"]["ingressClassName"], "nginx");
        let rule = &body["spec"]["rules"][0];
        assert_eq!(rule["host"], "shop.apps.example.com");
        let backend = &rule["http"]["paths"][0]["backend"]["service"];
        assert_eq!(backend["name"], "odoo");
        assert_eq!(backend["port"]["number"], 8069);
        assert_eq!(body["spec"]["tls"][0]["secretName"], "wildcard-tls");
        assert_eq!(target(&record()).unwrap().0, "paas-ws-1");
    }

    #[test]
    fn without_class_or_tls_those_fields_are_absent() {
        let body = ingress_body(&record(), &IngressSettings::default()).unwrap();
        assert!(body["spec"].get("ingressClassName").is_none());
        assert!(body["spec"].get("tls").is_none());
        let external = RouteRecord {
            service_url: "http://example.com:80".into(),
            ..record()
        };
        assert!(ingress_body(&external, &IngressSettings::default()).is_err());
    }
}
