//! One route, as recorded: a ConfigMap in the operator's namespace named
//! from the subdomain (`paas-route-{subdomain}`), labelled with the
//! release's namespace and name, holding the hostname, the service URL,
//! the backend, the DNS record id, the lifecycle state and whether the
//! route is in place (`applied`).

use std::collections::BTreeMap;

use clap::ValueEnum;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;

use super::names::Subdomain;
use crate::config::ExposureBackend;
use crate::model::RouteInfo;
use crate::render::confine::OPERATOR_LABEL;

/// Marks a ConfigMap as a route record.
pub const ROUTE_LABEL: &str = "paas-operator/route";
/// The namespace of the release that owns a route.
pub const NAMESPACE_LABEL: &str = "paas-operator/namespace";
/// The release that owns a route.
pub const RELEASE_LABEL: &str = "paas-operator/release";
/// Prefix of every route record's name.
const RECORD_PREFIX: &str = "paas-route-";

/// The release a route belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReleaseRef {
    pub namespace: String,
    pub name: String,
}

/// What a route is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    /// The release's app (`expose` on install): its `route`.
    App,
    /// The release's MCP sidecar (`{subdomain}-mcp`).
    Mcp,
    /// Made through `POST /api/routes`; belongs to no release.
    Manual,
}

impl RouteKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::App => "app",
            Self::Mcp => "mcp",
            Self::Manual => "manual",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "app" => Self::App,
            "mcp" => Self::Mcp,
            "manual" => Self::Manual,
            _ => return None,
        })
    }
}

/// Whether a route should exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteState {
    /// Claimed, but not yet known to be free of someone else's rule (the
    /// check could not be made): no sync writes its rule until it is.
    Pending,
    Active,
    /// Its rule and DNS record are being removed; the record goes last.
    Removing,
}

impl RouteState {
    /// As recorded (`state` in the record).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Removing => "removing",
        }
    }

    /// A record without a state (written before states existed) is active.
    pub(crate) fn parse(value: Option<&str>) -> Self {
        match value {
            Some("removing") => Self::Removing,
            Some("pending") => Self::Pending,
            _ => Self::Active,
        }
    }
}

/// One route, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRecord {
    pub subdomain: Subdomain,
    pub hostname: String,
    pub service_url: String,
    pub path: Option<String>,
    /// `None` for a route made through `/api/routes`.
    pub owner: Option<ReleaseRef>,
    pub kind: RouteKind,
    /// The backend that put the route in place (or is to).
    pub backend: ExposureBackend,
    pub state: RouteState,
    /// True once the route is wholly in place (rule or Ingress, and DNS).
    pub applied: bool,
    pub dns_record_id: Option<String>,
    /// The resourceVersion read; writes are checked against it.
    pub version: Option<String>,
}

impl RouteRecord {
    /// The record's ConfigMap name.
    pub(crate) fn record_name(subdomain: &Subdomain) -> String {
        format!("{RECORD_PREFIX}{subdomain}")
    }

    pub(crate) fn is_owned_by(&self, namespace: &str, name: &str) -> bool {
        self.owner
            .as_ref()
            .is_some_and(|o| o.namespace == namespace && o.name == name)
    }

    /// The release's `route`, when this is its app route and in place.
    pub(crate) fn route_info(&self) -> Option<RouteInfo> {
        (self.kind == RouteKind::App && self.state == RouteState::Active && self.applied).then(
            || RouteInfo {
                hostname: self.hostname.clone(),
                service_url: self.service_url.clone(),
                enabled: true,
            },
        )
    }

    pub(crate) fn to_config_map(&self, namespace: &str) -> ConfigMap {
        let mut labels = BTreeMap::from([
            (OPERATOR_LABEL.0.to_owned(), OPERATOR_LABEL.1.to_owned()),
            (ROUTE_LABEL.to_owned(), "true".to_owned()),
        ]);
        let mut data = BTreeMap::from([
            ("subdomain".to_owned(), self.subdomain.to_string()),
            ("hostname".to_owned(), self.hostname.clone()),
            ("service_url".to_owned(), self.service_url.clone()),
            ("kind".to_owned(), self.kind.as_str().to_owned()),
            ("backend".to_owned(), self.backend.as_str().to_owned()),
            ("state".to_owned(), self.state.as_str().to_owned()),
            ("applied".to_owned(), self.applied.to_string()),
        ]);
        if let Some(owner) = &self.owner {
            labels.insert(NAMESPACE_LABEL.to_owned(), owner.namespace.clone());
            labels.insert(RELEASE_LABEL.to_owned(), owner.name.clone());
            data.insert("namespace".to_owned(), owner.namespace.clone());
            data.insert("release".to_owned(), owner.name.clone());
        }
        if let Some(path) = &self.path {
            data.insert("path".to_owned(), path.clone());
        }
        if let Some(id) = &self.dns_record_id {
            data.insert("dns_record_id".to_owned(), id.clone());
        }
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(Self::record_name(&self.subdomain)),
                namespace: Some(namespace.to_owned()),
                labels: Some(labels),
                resource_version: self.version.clone(),
                ..ObjectMeta::default()
            },
            data: Some(data),
            ..ConfigMap::default()
        }
    }

    /// Reads a record back; `None` for a ConfigMap that is not one.
    pub(crate) fn from_config_map(map: &ConfigMap) -> Option<Self> {
        let data = map.data.as_ref()?;
        let get = |key: &str| data.get(key).filter(|v| !v.is_empty()).cloned();
        // An unknown backend (or `none`) makes the record unreadable:
        // listing skips it with a warning, and nothing acts on it.
        let backend = ExposureBackend::from_str(data.get("backend")?, false)
            .ok()
            .filter(|b| *b != ExposureBackend::None)?;
        let owner = match (get("namespace"), get("release")) {
            (Some(namespace), Some(name)) => Some(ReleaseRef { namespace, name }),
            _ => None,
        };
        Some(Self {
            subdomain: Subdomain::parse(data.get("subdomain")?).ok()?,
            hostname: get("hostname")?,
            service_url: get("service_url")?,
            path: get("path"),
            owner,
            kind: RouteKind::parse(data.get("kind")?)?,
            backend,
            state: RouteState::parse(data.get("state").map(String::as_str)),
            applied: data.get("applied").is_some_and(|v| v == "true"),
            dns_record_id: get("dns_record_id"),
            version: map.metadata.resource_version.clone(),
        })
    }
}

/// A record for tests: `{sub}.apps.example.com` routed to
/// `http://{sub}.ns.svc.cluster.local:80` for release `{sub}` of `ns`,
/// applied when active.
#[cfg(test)]
pub(crate) fn test_record(sub: &str, backend: ExposureBackend, state: RouteState) -> RouteRecord {
    RouteRecord {
        subdomain: Subdomain::parse(sub).expect("a test subdomain"),
        hostname: format!("{sub}.apps.example.com"),
        service_url: format!("http://{sub}.ns.svc.cluster.local:80"),
        path: None,
        owner: Some(ReleaseRef {
            namespace: "ns".into(),
            name: sub.into(),
        }),
        kind: RouteKind::App,
        backend,
        state,
        applied: state == RouteState::Active,
        dns_record_id: None,
        version: Some("1".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RouteRecord {
        RouteRecord {
            subdomain: Subdomain::parse("app-1").unwrap(),
            hostname: "app-1.apps.example.com".into(),
            service_url: "http://web.paas-ws-1.svc.cluster.local:80".into(),
            path: None,
            owner: Some(ReleaseRef {
                namespace: "paas-ws-1".into(),
                name: "svc-1".into(),
            }),
            kind: RouteKind::App,
            backend: ExposureBackend::Cloudflare,
            state: RouteState::Active,
            applied: true,
            dns_record_id: Some("abc".into()),
            version: Some("7".into()),
        }
    }

    #[test]
    fn a_record_of_an_unknown_backend_is_unreadable() {
        let mut map = record().to_config_map("paas-system");
        for unknown in ["none", "gateway", ""] {
            map.data
                .as_mut()
                .unwrap()
                .insert("backend".into(), unknown.into());
            assert_eq!(RouteRecord::from_config_map(&map), None, "{unknown:?}");
        }
    }

    #[test]
    fn records_round_trip_through_config_maps() {
        let record = record();
        let map = record.to_config_map("paas-system");
        assert_eq!(map.metadata.name.as_deref(), Some("paas-route-app-1"));
        let labels = map.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[NAMESPACE_LABEL], "paas-ws-1");
        assert_eq!(labels[RELEASE_LABEL], "svc-1");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "paas-operator");
        assert_eq!(RouteRecord::from_config_map(&map), Some(record.clone()));
        let manual = RouteRecord {
            owner: None,
            kind: RouteKind::Manual,
            path: Some("^/api".into()),
            state: RouteState::Removing,
            ..record
        };
        let map = manual.to_config_map("paas-system");
        assert!(
            !map.metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key(RELEASE_LABEL)
        );
        assert_eq!(RouteRecord::from_config_map(&map), Some(manual));
        assert_eq!(RouteRecord::from_config_map(&ConfigMap::default()), None);
    }

    #[test]
    fn only_an_applied_active_app_route_is_a_releases_route() {
        let record = record();
        assert_eq!(
            record.route_info().map(|r| r.hostname),
            Some("app-1.apps.example.com".into())
        );
        assert!(record.is_owned_by("paas-ws-1", "svc-1"));
        assert!(!record.is_owned_by("paas-ws-1", "svc-2"));
        for other in [
            RouteRecord {
                applied: false,
                ..record.clone()
            },
            RouteRecord {
                kind: RouteKind::Mcp,
                ..record.clone()
            },
            RouteRecord {
                state: RouteState::Removing,
                ..record.clone()
            },
        ] {
            assert_eq!(other.route_info(), None);
        }
    }
}
