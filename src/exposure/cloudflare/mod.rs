//! Cloudflare's API v4, as far as exposure needs it: tunnels, their remote
//! configuration, and DNS records. One client per account, cheap to clone.
//!
//! Every call is bounded by `CLOUDFLARE_TIMEOUT` (its answer read in full
//! included) and reads at most [`MAX_ANSWER`] bytes of answer
//! (`crate::bounded`; a larger one is `Unreadable`), retried (at most
//! [`MAX_ATTEMPTS`] attempts) on 429 and 5xx — after `Retry-After` when
//! Cloudflare sends one (at most [`MAX_RETRY_AFTER`]), else with a growing,
//! jittered backoff — and on transport failures of idempotent calls. Each
//! attempt is counted in `cloudflare_requests_total{operation,outcome}` and
//! timed in `cloudflare_request_duration_seconds`. Cloudflare's own error
//! text is logged here and never put in an answer; the token is a
//! sensitive header, never logged.

mod call;
mod client;
pub(crate) mod document;

use call::parse;
pub(crate) use client::{CfError, Cloudflare, MAX_ATTEMPTS, MAX_RETRY_AFTER};

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{ApiError, Code};

/// Most records asked for per page of a DNS listing.
const DNS_PAGE: usize = 500;

/// A fixed sentence for people; what Cloudflare said is in the log.
impl From<CfError> for ApiError {
    fn from(error: CfError) -> Self {
        let operation = match &error {
            CfError::Status { operation, .. }
            | CfError::Timeout { operation }
            | CfError::Unreachable { operation }
            | CfError::Unreadable { operation } => operation.replace('_', " "),
        };
        if error.is_unavailable() {
            ApiError::new(
                Code::CloudflareUnavailable,
                format!("Cloudflare is unavailable ({operation}); try again later"),
            )
        } else {
            ApiError::new(
                Code::CloudflareError,
                format!(
                    "Cloudflare refused the request ({operation}); the operator's log has the reason"
                ),
            )
        }
    }
}

/// A tunnel's remote configuration and its version.
#[derive(Debug, Clone)]
pub(crate) struct TunnelConfig {
    pub(crate) version: i64,
    /// `None` for a tunnel never configured.
    pub(crate) config: Option<Value>,
}

/// A DNS record, as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct DnsRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
    #[serde(default)]
    pub(crate) content: String,
    #[serde(default)]
    pub(crate) proxied: bool,
    #[serde(default)]
    pub(crate) comment: Option<String>,
}

/// A tunnel, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CfTunnel {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) name: String,
    pub(crate) status: Option<String>,
    pub(crate) created_at: Option<String>,
    pub(crate) deleted_at: Option<String>,
    #[serde(default)]
    pub(crate) connections: Vec<CfConnection>,
}

/// One connection of a tunnel.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CfConnection {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) origin_ip: String,
    pub(crate) opened_at: Option<String>,
    #[serde(default)]
    pub(crate) is_pending_reconnect: bool,
}

/// A proxied CNAME to a tunnel, with the FQDN as its name (right whether or
/// not the domain is the zone's apex) and automatic TTL.
pub(crate) fn cname_body(hostname: &str, target: &str, comment: &str) -> Value {
    json!({
        "type": "CNAME",
        "name": hostname,
        "content": target,
        "ttl": 1,
        "proxied": true,
        "comment": comment,
    })
}

/// Where a tunnel's CNAMEs point.
pub(crate) fn tunnel_target(tunnel: &str) -> String {
    format!("{tunnel}.cfargotunnel.com")
}

impl Cloudflare {
    fn tunnel_path(&self, tunnel: &str) -> String {
        format!("/accounts/{}/cfd_tunnel/{tunnel}", self.account)
    }

    /// The shared tunnel's configuration.
    pub(crate) async fn get_config(&self, tunnel: &str) -> Result<TunnelConfig, CfError> {
        let path = format!("{}/configurations", self.tunnel_path(tunnel));
        let result: Value = self
            .call("get_config", Method::GET, &path, &[], None)
            .await?
            .result;
        Ok(TunnelConfig {
            version: result["version"].as_i64().unwrap_or(0),
            config: Some(result["config"].clone()).filter(|c| c.is_object()),
        })
    }

    /// Replaces the tunnel's configuration; returns the version written.
    pub(crate) async fn put_config(&self, tunnel: &str, config: &Value) -> Result<i64, CfError> {
        let path = format!("{}/configurations", self.tunnel_path(tunnel));
        let body = json!({ "config": config });
        let result = self
            .call("put_config", Method::PUT, &path, &[], Some(&body))
            .await?
            .result;
        Ok(result["version"].as_i64().unwrap_or(0))
    }

    /// The zone's DNS records matching `filters` (Cloudflare's list
    /// filters), every page.
    pub(crate) async fn list_dns(
        &self,
        zone: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<DnsRecord>, CfError> {
        let path = format!("/zones/{zone}/dns_records");
        let mut records = Vec::new();
        let per_page = DNS_PAGE.to_string();
        for page in 1.. {
            let page_text = page.to_string();
            let mut query: Vec<(&str, &str)> = filters.to_vec();
            query.extend([
                ("per_page", per_page.as_str()),
                ("page", page_text.as_str()),
            ]);
            let envelope = self
                .call("list_dns", Method::GET, &path, &query, None)
                .await?;
            let items: Vec<DnsRecord> = parse("list_dns", envelope.result)?;
            let pages = envelope
                .result_info
                .and_then(|info| info.total_pages)
                .unwrap_or(1);
            let empty = items.is_empty();
            records.extend(items);
            if empty || page >= pages {
                break;
            }
        }
        Ok(records)
    }

    pub(crate) async fn create_dns(&self, zone: &str, body: &Value) -> Result<DnsRecord, CfError> {
        let path = format!("/zones/{zone}/dns_records");
        let result = self
            .call("create_dns", Method::POST, &path, &[], Some(body))
            .await?
            .result;
        parse("create_dns", result)
    }

    pub(crate) async fn update_dns(
        &self,
        zone: &str,
        id: &str,
        body: &Value,
    ) -> Result<DnsRecord, CfError> {
        let path = format!("/zones/{zone}/dns_records/{id}");
        let result = self
            .call("update_dns", Method::PUT, &path, &[], Some(body))
            .await?
            .result;
        parse("update_dns", result)
    }

    /// Deletes a DNS record; one already gone is fine.
    pub(crate) async fn delete_dns(&self, zone: &str, id: &str) -> Result<(), CfError> {
        let path = format!("/zones/{zone}/dns_records/{id}");
        match self
            .call("delete_dns", Method::DELETE, &path, &[], None)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// A remotely managed tunnel (`config_src: cloudflare`) with the given
    /// secret (base64 of 32 random bytes).
    pub(crate) async fn create_tunnel(
        &self,
        name: &str,
        secret: &str,
    ) -> Result<CfTunnel, CfError> {
        let path = format!("/accounts/{}/cfd_tunnel", self.account);
        let body = json!({ "name": name, "tunnel_secret": secret, "config_src": "cloudflare" });
        let result = self
            .call("create_tunnel", Method::POST, &path, &[], Some(&body))
            .await?
            .result;
        parse("create_tunnel", result)
    }

    pub(crate) async fn get_tunnel(&self, tunnel: &str) -> Result<CfTunnel, CfError> {
        let result = self
            .call(
                "get_tunnel",
                Method::GET,
                &self.tunnel_path(tunnel),
                &[],
                None,
            )
            .await?
            .result;
        parse("get_tunnel", result)
    }

    /// The token `cloudflared tunnel run --token` takes. A secret.
    pub(crate) async fn tunnel_token(&self, tunnel: &str) -> Result<String, CfError> {
        let path = format!("{}/token", self.tunnel_path(tunnel));
        let result = self
            .call("get_tunnel_token", Method::GET, &path, &[], None)
            .await?
            .result;
        result
            .as_str()
            .map(str::to_owned)
            .ok_or(CfError::Unreadable {
                operation: "get_tunnel_token",
            })
    }

    /// Deletes a tunnel and its connections; one already gone is fine.
    pub(crate) async fn delete_tunnel(&self, tunnel: &str) -> Result<(), CfError> {
        let query = [("cascade", "true")];
        let path = self.tunnel_path(tunnel);
        match self
            .call("delete_tunnel", Method::DELETE, &path, &query, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.is_not_found() => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::SecretString;

    #[test]
    fn errors_become_fixed_sentences() {
        let refused: ApiError = CfError::Status {
            operation: "put_config",
            status: 400,
            code: Some(1055),
        }
        .into();
        assert_eq!(refused.code, Code::CloudflareError);
        assert!(refused.detail.contains("put config"));
        let busy: ApiError = CfError::Status {
            operation: "put_config",
            status: 429,
            code: Some(971),
        }
        .into();
        assert_eq!(busy.code, Code::CloudflareUnavailable);
        let slow: ApiError = CfError::Timeout {
            operation: "get_config",
        }
        .into();
        assert_eq!(slow.code, Code::CloudflareUnavailable);
    }

    #[test]
    fn cnames_are_proxied_fqdns_with_automatic_ttl() {
        // The domain below the zone's apex (zone example.com): a relative
        // name `a` (the earlier operator's) would be a.example.com; the
        // FQDN is right whatever the zone.
        let hostname = crate::exposure::names::Subdomain::parse("a")
            .unwrap()
            .hostname("apps.example.com");
        let body = cname_body(&hostname, &tunnel_target("t-1"), "c");
        assert_eq!(body["name"], "a.apps.example.com");
        assert_eq!(body["content"], "t-1.cfargotunnel.com");
        assert_eq!(body["ttl"], 1);
        assert_eq!(body["proxied"], true);
    }

    #[test]
    fn debug_shows_no_token() {
        let token: SecretString = "t0k3n-value".parse().unwrap();
        let client = Cloudflare::new(
            "http://127.0.0.1:9/client/v4/",
            &token,
            "acc",
            Duration::from_secs(1),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("t0k3n"));
        assert_eq!(client.base, "http://127.0.0.1:9/client/v4");
    }
}
