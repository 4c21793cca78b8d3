//! Wire types of public exposure (`expose` on install, `route` in
//! ReleaseInfo, `/api/routes`) and dedicated tunnels (`/api/tunnels`). The
//! field names are the ones the platform reads (docs/exposure.md); do not
//! rename them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `expose` in `POST /api/releases`: publish the release at
/// `https://{subdomain}.{domain}` once it is installed.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ExposeRequest {
    /// Nothing is exposed unless true.
    #[serde(default)]
    pub enabled: bool,
    /// A DNS label (lowercase letters, digits, '-'; at most 59 characters,
    /// so `{subdomain}-mcp` is one too). Default:
    /// `{release}-{namespace without the tenant prefix}`.
    pub subdomain: Option<String>,
    /// The Service to route to. Default: the release's first Service
    /// labelled `app.kubernetes.io/instance={release}` that is not headless.
    pub service_name: Option<String>,
    /// The Service port. Default: the first of 80, 8080, 3000, 8000, 443,
    /// 8443 the Service has, else its first port.
    pub service_port: Option<i64>,
}

/// Where a release is published (`route` in ReleaseInfo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteInfo {
    /// `{subdomain}.{domain}`.
    pub hostname: String,
    /// `http://{service}.{namespace}.svc.cluster.local:{port}`.
    pub service_url: String,
    /// Always true (a route that is not in place is `route: null`).
    pub enabled: bool,
}

/// One ingress rule of the shared tunnel (or one route of the ingress
/// backend), as the platform reads them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteRule {
    /// Absent on the catch-all rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    pub service: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `GET /api/routes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteList {
    /// Every rule, in order, foreign ones and the catch-all included
    /// (empty when exposure is off).
    pub routes: Vec<RouteRule>,
    pub enabled: bool,
    pub domain: String,
}

/// `POST /api/routes`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateRouteRequest {
    /// A DNS label; the route is `{subdomain}.{domain}`.
    pub subdomain: String,
    /// `http(s)://host[:port]`, no path.
    pub service_url: String,
    /// A path regular expression the rule is limited to.
    pub path: Option<String>,
}

/// The route `POST /api/routes` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteCreated {
    pub hostname: String,
    pub service: String,
    pub path: Option<String>,
}

/// What one reconciliation changed, by kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconcileReport {
    /// Routes (re)applied: missing or failed earlier, now in place.
    pub applied: RouteChanges,
    /// Routes removed: their release is gone.
    pub removed: RouteChanges,
    /// DNS records of ours that no route (or live tunnel) owns, removed.
    pub orphaned_dns_removed: RouteChanges,
    /// Routes that could not be put in place or removed now (retried at the
    /// next reconciliation).
    pub failed: RouteChanges,
}

/// A count and the hostnames counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RouteChanges {
    pub count: usize,
    pub hostnames: Vec<String>,
}

impl RouteChanges {
    pub fn push(&mut self, hostname: impl Into<String>) {
        self.hostnames.push(hostname.into());
        self.count = self.hostnames.len();
    }
}

impl ReconcileReport {
    /// True when nothing was changed and nothing failed.
    pub fn is_empty(&self) -> bool {
        self.applied.count
            + self.removed.count
            + self.orphaned_dns_removed.count
            + self.failed.count
            == 0
    }
}

/// `POST /api/tunnels`: a dedicated tunnel for one customer device.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TunnelCreateRequest {
    /// The tunnel's name at Cloudflare.
    pub name: String,
    /// The public hostname routed through it.
    pub hostname: String,
    /// Where the device's connector sends that hostname's traffic.
    #[serde(default = "default_tunnel_service")]
    pub service_url: String,
}

fn default_tunnel_service() -> String {
    "http://localhost:8123".to_owned()
}

/// The tunnel `POST /api/tunnels` made.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TunnelCreated {
    pub tunnel_id: String,
    pub tunnel_name: String,
    /// For `cloudflared tunnel run --token`. A secret.
    pub tunnel_token: String,
    pub hostname: String,
    /// The CNAME made for the hostname; null when none could be made.
    pub dns_record_id: Option<String>,
}

impl std::fmt::Debug for TunnelCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelCreated")
            .field("tunnel_id", &self.tunnel_id)
            .field("tunnel_name", &self.tunnel_name)
            .field("tunnel_token", &"..")
            .field("hostname", &self.hostname)
            .field("dns_record_id", &self.dns_record_id)
            .finish()
    }
}

/// `GET /api/tunnels/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TunnelStatus {
    pub tunnel_id: String,
    pub name: String,
    /// Cloudflare's status: `healthy`, `degraded`, `down`, `inactive`, or
    /// `unknown`.
    pub status: String,
    /// The live connections only: one pending reconnect is left out, so an
    /// empty list means "not connected".
    pub connections: Vec<TunnelConnection>,
    pub created_at: Option<String>,
}

/// One live connection of a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TunnelConnection {
    /// The connection's id.
    pub connector_id: String,
    /// Always empty (kept for the platform, which reads it).
    #[serde(rename = "type")]
    pub kind: String,
    pub origin_ip: String,
    /// RFC 3339.
    pub opened_at: String,
}

/// `GET /api/tunnels/{id}/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TunnelToken {
    pub tunnel_id: String,
    /// A secret.
    pub token: String,
}

impl std::fmt::Debug for TunnelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelToken")
            .field("tunnel_id", &self.tunnel_id)
            .field("token", &"..")
            .finish()
    }
}

/// `DELETE /api/releases/{namespace}/{name}` query.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UninstallQuery {
    /// The subdomain the release was exposed at (the platform sends it).
    /// Every route recorded for the release is removed either way; this
    /// also finds one the earlier operator made (no record) at
    /// `{subdomain}` or `{subdomain}-mcp`, when it routes into the
    /// release's namespace.
    pub subdomain: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catch_all_has_no_hostname_key() {
        let rule = RouteRule {
            hostname: None,
            service: "http_status:404".into(),
            path: None,
        };
        assert_eq!(
            serde_json::to_value(&rule).unwrap(),
            serde_json::json!({"service": "http_status:404"})
        );
    }

    #[test]
    fn tokens_stay_out_of_debug() {
        let created = TunnelCreated {
            tunnel_id: "id".into(),
            tunnel_name: "n".into(),
            tunnel_token: "s3cr3t".into(),
            hostname: "h".into(),
            dns_record_id: None,
        };
        assert!(!format!("{created:?}").contains("s3cr3t"));
        let token = TunnelToken {
            tunnel_id: "id".into(),
            token: "s3cr3t".into(),
        };
        assert!(!format!("{token:?}").contains("s3cr3t"));
    }

    #[test]
    fn connection_type_is_named_type_on_the_wire() {
        let connection = TunnelConnection {
            connector_id: "c".into(),
            kind: String::new(),
            origin_ip: "192.0.2.1".into(),
            opened_at: "2026-01-01T00:00:00Z".into(),
        };
        assert_eq!(serde_json::to_value(&connection).unwrap()["type"], "");
        let defaults: TunnelCreateRequest =
            serde_json::from_str(r#"{"name": "n", "hostname": "h.example.com"}"#).unwrap();
        assert_eq!(defaults.service_url, "http://localhost:8123");
        let expose: ExposeRequest = serde_json::from_str(r#"{"subdomain": "x"}"#).unwrap();
        assert!(!expose.enabled);
    }
}
