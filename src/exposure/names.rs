//! Validated exposure input, in the style of `crate::names`: a subdomain,
//! a tunnel's hostname, name and id, a Service name, and the URLs rules
//! route to. Nothing unvalidated reaches a ConfigMap name, a Cloudflare URL
//! path or the tunnel configuration.

use std::fmt;

use crate::error::{ApiError, Code};
use crate::names::{ReleaseName, TenantNamespace, is_dns1123_label};

/// Longest subdomain: `{subdomain}-mcp` (the MCP sidecar's route) must
/// still be a DNS label (63).
pub(crate) const MAX_SUBDOMAIN: usize = 59;

/// What ends the subdomain of every release's MCP route
/// (`{generated subdomain}-mcp`): no app route may end with it, so no app
/// route can hold, or later take, another release's MCP route.
pub(crate) const MCP_SUFFIX: &str = "-mcp";

/// Why exposure input was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not a DNS label of at most 59 characters.
    #[error(
        "subdomain {0:?} is invalid: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 59 characters"
    )]
    Subdomain(String),
    /// An app route's subdomain ending in `-mcp`.
    #[error(
        "subdomain {0:?} is reserved: names ending in -mcp are the MCP sidecars' routes ({{release subdomain}}-mcp); choose another"
    )]
    ReservedSubdomain(String),
    /// `service_name` is not a Service name.
    #[error("service_name {0:?} is not a valid Service name")]
    ServiceName(String),
    /// `service_port` is not a port number.
    #[error("service_port {0} is not a port number (1-65535)")]
    ServicePort(i64),
    /// `service_url` is not a URL a rule can route to.
    #[error("service_url {0:?} is invalid: {1}")]
    ServiceUrl(String, &'static str),
    /// `path` is not a usable path expression.
    #[error("path {0:?} is invalid: {1}")]
    Path(String, &'static str),
    /// A tunnel's hostname is not a DNS name.
    #[error("hostname {0:?} is not a valid DNS name (at least two labels)")]
    Hostname(String),
    /// A tunnel's name is empty, too long or has control characters.
    #[error("tunnel name {0:?} is invalid: 1-100 printable characters")]
    TunnelName(String),
    /// A tunnel id is not a UUID.
    #[error("tunnel id {0:?} is not a UUID")]
    TunnelId(String),
}

impl From<InputError> for ApiError {
    fn from(error: InputError) -> Self {
        let code = match &error {
            InputError::Subdomain(_) => Code::InvalidSubdomain,
            InputError::ReservedSubdomain(_) => Code::SubdomainReserved,
            InputError::ServiceName(_)
            | InputError::ServicePort(_)
            | InputError::ServiceUrl(..)
            | InputError::Path(..) => Code::InvalidService,
            InputError::Hostname(_) => Code::InvalidHostname,
            InputError::TunnelName(_) => Code::InvalidTunnelName,
            InputError::TunnelId(_) => Code::InvalidPath,
        };
        ApiError::new(code, error.to_string())
    }
}

/// Input echoed in an error, cut short.
fn shown(value: &str) -> String {
    value.chars().take(80).collect()
}

/// The first label of a route's hostname: a DNS label of at most
/// `MAX_SUBDOMAIN` characters, lower-cased.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subdomain(String);

impl Subdomain {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let lower = value.trim().to_ascii_lowercase();
        if lower.len() <= MAX_SUBDOMAIN && is_dns1123_label(&lower) {
            Ok(Self(lower))
        } else {
            Err(InputError::Subdomain(shown(value)))
        }
    }

    /// The earlier operator's default: `{release}-{namespace without the
    /// tenant prefix}` (dots of a release name become '-').
    pub(crate) fn generated(
        namespace: &TenantNamespace,
        name: &ReleaseName,
        prefix: &str,
    ) -> Result<Self, InputError> {
        let suffix = namespace
            .as_str()
            .strip_prefix(prefix)
            .unwrap_or(namespace.as_str());
        Self::parse(&format!("{}-{suffix}", name.as_str().replace('.', "-")))
    }

    /// This subdomain for an app's route (an install's `expose`, generated
    /// or given, and `POST /api/routes`): refused when it ends in `-mcp`,
    /// the name of some release's MCP route (now or later).
    pub(crate) fn for_app(self) -> Result<Self, InputError> {
        if self.0.ends_with(MCP_SUFFIX) {
            Err(InputError::ReservedSubdomain(self.0))
        } else {
            Ok(self)
        }
    }

    /// The route of the release's MCP sidecar: `{subdomain}-mcp`.
    pub(crate) fn mcp(&self) -> Self {
        Self(format!("{}-mcp", self.0))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// `{subdomain}.{domain}`.
    pub(crate) fn hostname(&self, domain: &str) -> String {
        format!("{}.{domain}", self.0)
    }
}

impl fmt::Display for Subdomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Service's name (a DNS-1035 label: it starts with a letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceName(String);

impl ServiceName {
    pub(crate) fn parse(value: &str) -> Result<Self, InputError> {
        let starts_with_letter = value.bytes().next().is_some_and(|b| b.is_ascii_lowercase());
        if starts_with_letter && is_dns1123_label(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InputError::ServiceName(shown(value)))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A port number from a request.
pub(crate) fn service_port(value: i64) -> Result<u16, InputError> {
    u16::try_from(value)
        .ok()
        .filter(|port| *port > 0)
        .ok_or(InputError::ServicePort(value))
}

/// A fully qualified DNS name (a tunnel's public hostname), lower-cased,
/// without a trailing dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hostname(String);

impl Hostname {
    pub(crate) fn parse(value: &str) -> Result<Self, InputError> {
        let lower = value.trim().trim_end_matches('.').to_ascii_lowercase();
        let labels: Vec<&str> = lower.split('.').collect();
        let ok = lower.len() <= 253
            && labels.len() >= 2
            && labels.iter().all(|label| is_dns1123_label(label));
        if ok {
            Ok(Self(lower))
        } else {
            Err(InputError::Hostname(shown(value)))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tunnel's name at Cloudflare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TunnelName(String);

impl TunnelName {
    pub(crate) fn parse(value: &str) -> Result<Self, InputError> {
        let trimmed = value.trim();
        let ok = !trimmed.is_empty()
            && trimmed.chars().count() <= 100
            && !trimmed.chars().any(char::is_control);
        if ok {
            Ok(Self(trimmed.to_owned()))
        } else {
            Err(InputError::TunnelName(shown(value)))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// A tunnel's id: a UUID, lower-cased (it is a segment of Cloudflare URLs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelId(String);

impl TunnelId {
    pub(crate) fn parse(value: &str) -> Result<Self, InputError> {
        uuid::Uuid::try_parse(value)
            .ok()
            .filter(|_| value.len() == 36)
            .map(|id| Self(id.hyphenated().to_string()))
            .ok_or_else(|| InputError::TunnelId(shown(value)))
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TunnelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which schemes an origin URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origins {
    /// Routes of the shared tunnel: web apps only.
    Web,
    /// A dedicated tunnel's service: what cloudflared accepts for a host.
    Tunnel,
}

/// An origin URL as cloudflared takes it: `scheme://host[:port]`, no user,
/// path, query or fragment (a trailing '/' is dropped).
pub(crate) fn origin_url(value: &str, origins: Origins) -> Result<String, InputError> {
    let bad = |why| InputError::ServiceUrl(shown(value), why);
    let trimmed = value.trim().trim_end_matches('/');
    let (scheme, authority) = trimmed
        .split_once("://")
        .ok_or_else(|| bad("it must be scheme://host[:port]"))?;
    let scheme = scheme.to_ascii_lowercase();
    let allowed: &[&str] = match origins {
        Origins::Web => &["http", "https"],
        Origins::Tunnel => &["http", "https", "ws", "wss", "tcp", "ssh", "rdp", "smb"],
    };
    if !allowed.contains(&scheme.as_str()) {
        return Err(bad("this scheme is not accepted"));
    }
    if authority.is_empty()
        || authority.len() > 260
        || authority.chars().any(|c| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        })
    {
        return Err(bad(
            "it must have a host and no user, path, query or fragment",
        ));
    }
    let authority = authority.to_ascii_lowercase();
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (inner, after) = rest.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| bad("junk after ']'"))?,
                ),
            };
            (inner.parse::<std::net::Ipv6Addr>().is_ok(), port)
        }
        None => {
            let (host, port) = match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority.as_str(), None),
            };
            let ok = host.parse::<std::net::Ipv4Addr>().is_ok()
                || (host.len() <= 253 && host.split('.').all(is_dns1123_label));
            (ok, port)
        }
    };
    if !host_ok {
        return Err(bad("the host is not a DNS name or IP address"));
    }
    if let Some(port) = port {
        port.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| bad("the port is not a number (1-65535)"))?;
    }
    Ok(format!("{scheme}://{authority}"))
}

/// A rule's path filter: a regular expression cloudflared matches the
/// request path against; kept short and printable.
pub(crate) fn rule_path(value: &str) -> Result<String, InputError> {
    let bad = |why| InputError::Path(shown(value), why);
    if value.is_empty() || value.len() > 200 {
        return Err(bad("1 to 200 characters"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("no whitespace or control characters"));
    }
    Ok(value.to_owned())
}

/// `http://{service}.{namespace}.svc.cluster.local:{port}`.
pub(crate) fn cluster_service_url(service: &str, namespace: &str, port: u16) -> String {
    format!("http://{service}.{namespace}.svc.cluster.local:{port}")
}

/// The Service, namespace and port of a cluster-local service URL made by
/// [`cluster_service_url`] (the `ingress` backend can route only to those).
pub(crate) fn parse_cluster_service_url(url: &str) -> Option<(String, String, u16)> {
    let rest = url.strip_prefix("http://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = host.strip_suffix(".svc.cluster.local")?;
    let (service, namespace) = host.split_once('.')?;
    (is_dns1123_label(service) && is_dns1123_label(namespace))
        .then(|| (service.to_owned(), namespace.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subdomains_are_dns_labels_with_room_for_mcp() {
        assert_eq!(
            Subdomain::parse("paas-cs-1a2b").unwrap().as_str(),
            "paas-cs-1a2b"
        );
        assert_eq!(Subdomain::parse("App-1").unwrap().as_str(), "app-1");
        for bad in ["", "-a", "a-", "a.b", "a_b", "a b", "ä", &"a".repeat(60)] {
            assert!(Subdomain::parse(bad).is_err(), "{bad:?}");
        }
        let longest = Subdomain::parse(&"a".repeat(59)).unwrap();
        assert!(is_dns1123_label(longest.mcp().as_str()));
        assert_eq!(
            Subdomain::parse("x").unwrap().hostname("apps.example.com"),
            "x.apps.example.com"
        );
        let error: ApiError = Subdomain::parse("a.b").unwrap_err().into();
        assert_eq!(error.code, Code::InvalidSubdomain);
    }

    #[test]
    fn generated_subdomain_uses_the_configured_prefix() {
        let namespace = TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").unwrap();
        let name = ReleaseName::parse("svc-1a2b3c4d").unwrap();
        let generated = Subdomain::generated(&namespace, &name, "paas-ws-").unwrap();
        assert_eq!(generated.as_str(), "svc-1a2b3c4d-3f9a0c1d");
        let other = TenantNamespace::parse("tenant-abc", "tenant-").unwrap();
        let dotted = ReleaseName::parse("web.v2").unwrap();
        assert_eq!(
            Subdomain::generated(&other, &dotted, "tenant-")
                .unwrap()
                .as_str(),
            "web-v2-abc"
        );
        assert_eq!(generated.mcp().as_str(), "svc-1a2b3c4d-3f9a0c1d-mcp");
    }

    #[test]
    fn app_routes_never_take_an_mcp_routes_name() {
        let namespace = TenantNamespace::parse("paas-ws-3f9a0c1d", "paas-ws-").unwrap();
        let victim = ReleaseName::parse("svc-1a2b3c4d").unwrap();
        let victims_mcp = Subdomain::generated(&namespace, &victim, "paas-ws-")
            .unwrap()
            .mcp();
        // The squatter's subdomain is the victim's MCP route: refused.
        let squat = Subdomain::parse(victims_mcp.as_str()).unwrap().for_app();
        let error: ApiError = squat.unwrap_err().into();
        assert_eq!(error.code, Code::SubdomainReserved);
        assert_eq!(error.code.status(), http::StatusCode::BAD_REQUEST);
        assert!(
            error.detail.contains("svc-1a2b3c4d-3f9a0c1d-mcp"),
            "{}",
            error.detail
        );
        for reserved in ["x-mcp", "MCP-MCP", "a-b-mcp"] {
            assert!(
                Subdomain::parse(reserved).unwrap().for_app().is_err(),
                "{reserved}"
            );
        }
        for fine in ["mcp", "mcp-x", "x-mcpx", "xmcp", "paas-cs-1a2b"] {
            assert!(Subdomain::parse(fine).unwrap().for_app().is_ok(), "{fine}");
        }
        // A generated name that would end in -mcp (a namespace named so)
        // is refused too, and an app route is never anyone's MCP route.
        let odd = TenantNamespace::parse("paas-ws-mcp", "paas-ws-").unwrap();
        assert!(
            Subdomain::generated(&odd, &victim, "paas-ws-")
                .unwrap()
                .for_app()
                .is_err()
        );
        let app = Subdomain::generated(&namespace, &victim, "paas-ws-")
            .unwrap()
            .for_app()
            .unwrap();
        assert!(!app.as_str().ends_with(MCP_SUFFIX));
        assert!(app.mcp().as_str().ends_with(MCP_SUFFIX));
    }

    #[test]
    fn services_ports_hostnames_names_and_ids() {
        assert!(ServiceName::parse("web").is_ok());
        assert!(ServiceName::parse("1web").is_err());
        assert!(ServiceName::parse("Web").is_err());
        assert_eq!(service_port(8080), Ok(8080));
        assert!(
            service_port(0).is_err() && service_port(70000).is_err() && service_port(-1).is_err()
        );
        assert_eq!(
            Hostname::parse("Home.Example.com.").unwrap().as_str(),
            "home.example.com"
        );
        assert!(Hostname::parse("localhost").is_err());
        assert!(Hostname::parse("a..b").is_err());
        assert!(Hostname::parse("*.example.com").is_err());
        assert!(TunnelName::parse("home-1").is_ok());
        assert!(TunnelName::parse(" ").is_err());
        assert!(TunnelName::parse("a\nb").is_err());
        let id = TunnelId::parse("5A6F7317-7E9D-4B0E-9D8F-9E734A88DBC5").unwrap();
        assert_eq!(id.as_str(), "5a6f7317-7e9d-4b0e-9d8f-9e734a88dbc5");
        assert!(TunnelId::parse("../../zones").is_err());
        assert!(TunnelId::parse("5a6f73177e9d4b0e9d8f9e734a88dbc5").is_err());
    }

    #[test]
    fn origin_urls_have_no_path_or_user() {
        let ok = |url| origin_url(url, Origins::Web).unwrap();
        assert_eq!(
            ok("http://web.ns.svc.cluster.local:80"),
            "http://web.ns.svc.cluster.local:80"
        );
        assert_eq!(ok("HTTPS://Example.com/"), "https://example.com");
        assert_eq!(ok("http://10.0.0.1:8080"), "http://10.0.0.1:8080");
        assert_eq!(ok("http://[::1]:8080"), "http://[::1]:8080");
        for bad in [
            "web:80",
            "ftp://x",
            "http://",
            "http://x/path",
            "http://u@x",
            "http://x?q",
            "http://x:0",
            "http://x:99999",
            "http://x y",
            "tcp://x:22",
        ] {
            assert!(origin_url(bad, Origins::Web).is_err(), "{bad}");
        }
        assert_eq!(
            origin_url("tcp://x:22", Origins::Tunnel).unwrap(),
            "tcp://x:22"
        );
        assert_eq!(
            origin_url("http://localhost:8123", Origins::Tunnel).unwrap(),
            "http://localhost:8123"
        );
        assert!(rule_path("^/api/.*").is_ok());
        assert!(rule_path("a b").is_err());
    }

    #[test]
    fn cluster_service_urls_round_trip() {
        let url = cluster_service_url("web", "paas-ws-1", 8080);
        assert_eq!(url, "http://web.paas-ws-1.svc.cluster.local:8080");
        assert_eq!(
            parse_cluster_service_url(&url),
            Some(("web".into(), "paas-ws-1".into(), 8080))
        );
        assert_eq!(parse_cluster_service_url("http://example.com:80"), None);
        assert_eq!(
            parse_cluster_service_url("https://web.ns.svc.cluster.local:80"),
            None
        );
    }
}
