//! Public exposure of releases (`expose`, `/api/routes`) and dedicated
//! tunnels (`/api/tunnels`): which backend routes a hostname to a release's
//! Service, the Cloudflare account it uses, and the operator's own
//! namespace, where route ownership is recorded. The Cloudflare settings
//! keep the earlier operator's names.

use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};

use super::list::{List, seconds};
use super::secret::SecretString;
use super::tenant::TenantConfig;

/// Where `{subdomain}.{domain}` is routed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExposureBackend {
    /// No exposure: `expose` is answered with `route: null`.
    None,
    /// Rules in one shared, remotely managed Cloudflare Tunnel, and proxied
    /// CNAME records to it.
    Cloudflare,
    /// A Kubernetes Ingress per route, in the release's namespace.
    Ingress,
}

impl ExposureBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Cloudflare => "cloudflare",
            Self::Ingress => "ingress",
        }
    }
}

/// Public exposure and tunnels.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Exposure")]
pub struct ExposureConfig {
    /// `none`, `cloudflare` or `ingress`. Default: `cloudflare` when
    /// CLOUDFLARE_ENABLED=true and the account, tunnel, token and domain are
    /// set (as the earlier operator decided), else `none`.
    #[arg(long, env = "EXPOSURE_BACKEND", value_enum)]
    pub exposure_backend: Option<ExposureBackend>,

    /// The earlier operator's switch for routing through Cloudflare.
    #[arg(long, env = "CLOUDFLARE_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub cloudflare_enabled: bool,

    /// Cloudflare's API v4 base URL.
    #[arg(
        long,
        env = "CLOUDFLARE_API_BASE",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    pub cloudflare_api_base: String,

    /// API token (Tunnel:Edit and DNS:Edit), sent as a Bearer token. A
    /// secret: never logged, never printed.
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", hide_env_values = true)]
    pub cloudflare_api_token: Option<SecretString>,

    /// The Cloudflare account that owns the tunnels.
    #[arg(long, env = "CLOUDFLARE_ACCOUNT_ID", default_value = "")]
    pub cloudflare_account_id: String,

    /// The shared tunnel every route goes through (remotely managed).
    #[arg(long, env = "CLOUDFLARE_TUNNEL_ID", default_value = "")]
    pub cloudflare_tunnel_id: String,

    /// The DNS zone of the domain; empty = no DNS records are made.
    #[arg(long, env = "CLOUDFLARE_ZONE_ID", default_value = "")]
    pub cloudflare_zone_id: String,

    /// Routes are `{subdomain}.{domain}`; it may be the zone's apex or a
    /// name below it (e.g. `apps.example.com`).
    #[arg(long, env = "CLOUDFLARE_DOMAIN", default_value = "")]
    pub cloudflare_domain: String,

    /// Seconds one Cloudflare API call may take (each retry gets as long).
    #[arg(long, env = "CLOUDFLARE_TIMEOUT", default_value = "15", value_parser = seconds)]
    pub cloudflare_timeout: Duration,

    /// The domain of routes for any backend; default CLOUDFLARE_DOMAIN.
    #[arg(long, env = "EXPOSURE_DOMAIN")]
    pub exposure_domain: Option<String>,

    /// `ingress` backend: the IngressClass of the Ingresses; empty = the
    /// cluster's default class.
    #[arg(long, env = "INGRESS_CLASS", default_value = "")]
    pub ingress_class: String,

    /// `ingress` backend: extra annotations, comma-separated `key=value`.
    #[arg(long, env = "INGRESS_ANNOTATIONS", default_value = "")]
    pub ingress_annotations: List,

    /// `ingress` backend: a TLS Secret (in each tenant namespace) for the
    /// hosts; empty = no `tls` section.
    #[arg(long, env = "INGRESS_TLS_SECRET", default_value = "")]
    pub ingress_tls_secret: String,

    /// The namespace the operator runs in: it records route ownership
    /// there (one ConfigMap per route) and keeps the Lease that serialises
    /// edits of the shared tunnel's configuration.
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "paas-system")]
    pub operator_namespace: String,

    /// Seconds between reconciliations of the routes (missing ones made
    /// again, those of gone releases and orphaned DNS records removed);
    /// 0 = only at start and on `POST /api/routes/reconcile`.
    #[arg(long, env = "EXPOSURE_RECONCILE_INTERVAL", default_value = "600", value_parser = seconds)]
    pub exposure_reconcile_interval: Duration,

    /// The namespace of the tunnel connector (cloudflared) or ingress
    /// controller; tenant NetworkPolicies admit it when exposure is on.
    #[arg(long, env = "EXPOSURE_CONNECTOR_NAMESPACE", default_value = "")]
    pub exposure_connector_namespace: String,
}

impl ExposureConfig {
    /// The API token, when one is set.
    pub fn token(&self) -> Option<&SecretString> {
        self.cloudflare_api_token.as_ref().filter(|t| !t.is_empty())
    }

    /// The earlier operator's "routing": enabled, and account, tunnel,
    /// token and domain set.
    fn cloudflare_routing_complete(&self) -> bool {
        self.token().is_some()
            && !self.cloudflare_account_id.is_empty()
            && !self.cloudflare_tunnel_id.is_empty()
            && !self.cloudflare_domain.is_empty()
    }

    /// Dedicated tunnels need only a token and an account.
    pub fn tunnels_enabled(&self) -> bool {
        self.token().is_some() && !self.cloudflare_account_id.is_empty()
    }

    /// The domain routes are made under.
    pub fn domain(&self) -> &str {
        self.exposure_domain
            .as_deref()
            .filter(|d| !d.is_empty())
            .unwrap_or(&self.cloudflare_domain)
            .trim_end_matches('.')
    }

    /// The backend in effect; refuses a chosen backend that lacks its
    /// settings (a typo should stop the start, not turn exposure off).
    pub fn backend(&self) -> anyhow::Result<ExposureBackend> {
        match self.exposure_backend {
            Some(ExposureBackend::Cloudflare) if !self.cloudflare_routing_complete() => bail!(
                "EXPOSURE_BACKEND=cloudflare needs CLOUDFLARE_API_TOKEN, CLOUDFLARE_ACCOUNT_ID, CLOUDFLARE_TUNNEL_ID and CLOUDFLARE_DOMAIN"
            ),
            Some(ExposureBackend::Ingress) if self.domain().is_empty() => {
                bail!("EXPOSURE_BACKEND=ingress needs EXPOSURE_DOMAIN (or CLOUDFLARE_DOMAIN)")
            }
            Some(chosen) => Ok(chosen),
            None if self.cloudflare_enabled && self.cloudflare_routing_complete() => {
                Ok(ExposureBackend::Cloudflare)
            }
            None => {
                if self.cloudflare_enabled {
                    tracing::warn!(
                        "CLOUDFLARE_ENABLED=true but the account, tunnel, token or domain is missing: exposure is off"
                    );
                }
                Ok(ExposureBackend::None)
            }
        }
    }

    /// `INGRESS_ANNOTATIONS` as pairs; refuses an item without `=`.
    pub fn ingress_annotations(&self) -> anyhow::Result<Vec<(String, String)>> {
        self.ingress_annotations
            .items()
            .iter()
            .map(|item| match item.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_owned(), value.trim().to_owned()))
                }
                _ => bail!("INGRESS_ANNOTATIONS item {item:?} is not key=value"),
            })
            .collect()
    }

    /// The tenant policy with the connector's namespace admitted by the
    /// tenants' NetworkPolicy when exposure is on.
    pub fn tenant_policy(&self, tenant: &TenantConfig, backend: ExposureBackend) -> TenantConfig {
        let mut tenant = tenant.clone();
        let connector = self.exposure_connector_namespace.trim();
        if backend != ExposureBackend::None
            && !connector.is_empty()
            && !tenant.network_allowed_namespaces.contains(connector)
        {
            tenant.network_allowed_namespaces = tenant
                .network_allowed_namespaces
                .items()
                .iter()
                .cloned()
                .chain([connector.to_owned()])
                .collect();
        }
        tenant
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;

    /// Parses with every Cloudflare setting given (empty unless `args`
    /// sets it), so the test environment's `CLOUDFLARE_*` do not leak in.
    fn parse(args: &[&str]) -> ExposureConfig {
        let mut all = vec!["paas-operator"];
        for flag in [
            "--cloudflare-enabled",
            "--cloudflare-api-token",
            "--cloudflare-account-id",
            "--cloudflare-tunnel-id",
            "--cloudflare-domain",
        ] {
            if !args.contains(&flag) {
                let empty = if flag == "--cloudflare-enabled" {
                    "false"
                } else {
                    ""
                };
                all.extend([flag, empty]);
            }
        }
        all.extend_from_slice(args);
        Config::try_parse_from(all).unwrap().exposure
    }

    const COMPLETE: &[&str] = &[
        "--cloudflare-api-token",
        "t0k3n",
        "--cloudflare-account-id",
        "acc",
        "--cloudflare-tunnel-id",
        "tun",
        "--cloudflare-domain",
        "apps.example.com",
    ];

    #[test]
    fn backend_follows_the_earlier_operators_switch() {
        let none = parse(&[]);
        assert_eq!(none.backend().unwrap(), ExposureBackend::None);
        assert_eq!(none.cloudflare_timeout, Duration::from_secs(15));
        assert_eq!(none.operator_namespace, "paas-system");
        assert_eq!(none.exposure_reconcile_interval, Duration::from_secs(600));
        let mut args = COMPLETE.to_vec();
        assert_eq!(parse(&args).backend().unwrap(), ExposureBackend::None);
        args.extend(["--cloudflare-enabled", "true"]);
        assert_eq!(parse(&args).backend().unwrap(), ExposureBackend::Cloudflare);
        // Enabled but incomplete: off, like the earlier operator.
        let incomplete = parse(&["--cloudflare-enabled", "true"]);
        assert_eq!(incomplete.backend().unwrap(), ExposureBackend::None);
        // Chosen explicitly but incomplete: refused at start.
        assert!(
            parse(&["--exposure-backend", "cloudflare"])
                .backend()
                .is_err()
        );
        assert!(parse(&["--exposure-backend", "ingress"]).backend().is_err());
        let ingress = parse(&["--exposure-backend", "ingress", "--exposure-domain", "a.b"]);
        assert_eq!(ingress.backend().unwrap(), ExposureBackend::Ingress);
        assert_eq!(ingress.domain(), "a.b");
    }

    #[test]
    fn tunnels_need_only_token_and_account() {
        assert!(!parse(&[]).tunnels_enabled());
        let config = parse(&[
            "--cloudflare-api-token",
            "x",
            "--cloudflare-account-id",
            "a",
        ]);
        assert!(config.tunnels_enabled());
        assert!(!format!("{config:?}").contains("\"x\""));
    }

    #[test]
    fn annotations_are_key_value_pairs() {
        let config = parse(&["--ingress-annotations", "a.io/x=1, b=two=2 ,,"]);
        assert_eq!(
            config.ingress_annotations().unwrap(),
            [("a.io/x".into(), "1".into()), ("b".into(), "two=2".into())]
        );
        let bad = parse(&["--ingress-annotations", "novalue"]);
        assert!(bad.ingress_annotations().is_err());
    }

    #[test]
    fn connector_namespace_is_admitted_only_when_exposure_is_on() {
        let config = Config::try_parse_from([
            "paas-operator",
            "--exposure-connector-namespace",
            "cloudflared",
            "--network-allowed-namespaces",
            "kube-system",
        ])
        .unwrap();
        let on = config
            .exposure
            .tenant_policy(&config.tenant, ExposureBackend::Cloudflare);
        assert!(on.network_allowed_namespaces.contains("cloudflared"));
        assert!(on.network_allowed_namespaces.contains("kube-system"));
        let off = config
            .exposure
            .tenant_policy(&config.tenant, ExposureBackend::None);
        assert!(!off.network_allowed_namespaces.contains("cloudflared"));
    }
}
