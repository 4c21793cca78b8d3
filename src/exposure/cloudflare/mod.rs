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

pub mod document;
pub mod shared;

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::bounded::{ReadError, read_body};
use crate::config::SecretString;
use crate::error::{ApiError, Code};

/// Attempts per call (the first and two retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// First backoff without `Retry-After`; doubled per attempt, ±25 %.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Most records asked for per page of a DNS listing.
const DNS_PAGE: usize = 500;
/// Largest answer read: a DNS page of 500 records is about
/// 250 KiB, the shared tunnel's configuration about 200 bytes per route
/// (8 MiB: some 40,000 routes).
pub const MAX_ANSWER: usize = 8 << 20;

/// Why a Cloudflare call failed. Cheap to clone: the outcome of one shared
/// configuration edit is handed to every request that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CfError {
    /// Cloudflare answered with an error status (after the retries, for 429
    /// and 5xx); its message was logged.
    #[error("Cloudflare answered {operation} with HTTP {status} (error code {code:?})")]
    Status {
        operation: &'static str,
        status: u16,
        code: Option<i64>,
    },
    /// No answer within CLOUDFLARE_TIMEOUT.
    #[error("Cloudflare did not answer {operation} in time")]
    Timeout { operation: &'static str },
    /// The connection failed.
    #[error("Cloudflare could not be reached for {operation}")]
    Unreachable { operation: &'static str },
    /// The answer was not Cloudflare's envelope.
    #[error("Cloudflare's answer to {operation} was unreadable")]
    Unreadable { operation: &'static str },
}

impl CfError {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Worth trying again later (as opposed to a refusal).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Unreadable { .. } => false,
        }
    }
}

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

/// Cloudflare's answer envelope.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<Message>,
    #[serde(default)]
    result: Value,
    result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct Message {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct ResultInfo {
    total_pages: Option<usize>,
}

/// A tunnel's remote configuration and its version.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    pub version: i64,
    /// `None` for a tunnel never configured.
    pub config: Option<Value>,
}

/// A DNS record, as far as we read it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DnsRecord {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub content: String,
    #[serde(default)]
    pub proxied: bool,
    #[serde(default)]
    pub comment: Option<String>,
}

/// A tunnel, as far as we read it.
#[derive(Debug, Clone, Deserialize)]
pub struct CfTunnel {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub status: Option<String>,
    pub created_at: Option<String>,
    pub deleted_at: Option<String>,
    #[serde(default)]
    pub connections: Vec<CfConnection>,
}

/// One connection of a tunnel.
#[derive(Debug, Clone, Deserialize)]
pub struct CfConnection {
    pub id: String,
    #[serde(default)]
    pub origin_ip: String,
    pub opened_at: Option<String>,
    #[serde(default)]
    pub is_pending_reconnect: bool,
}

/// A proxied CNAME to a tunnel, with the FQDN as its name (right whether or
/// not the domain is the zone's apex) and automatic TTL.
pub fn cname_body(hostname: &str, target: &str, comment: &str) -> Value {
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
pub fn tunnel_target(tunnel: &str) -> String {
    format!("{tunnel}.cfargotunnel.com")
}

/// A client for one Cloudflare account.
#[derive(Clone)]
pub struct Cloudflare {
    http: reqwest::Client,
    base: String,
    authorization: HeaderValue,
    account: String,
    /// CLOUDFLARE_TIMEOUT: one attempt, answer read in full included.
    timeout: Duration,
}

impl std::fmt::Debug for Cloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cloudflare")
            .field("base", &self.base)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl Cloudflare {
    pub fn new(
        base: &str,
        token: &SecretString,
        account: &str,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| {
                anyhow::anyhow!("CLOUDFLARE_API_TOKEN has characters a header cannot hold")
            })?;
        authorization.set_sensitive(true);
        // No client-wide timeout: each call's own deadline covers sending
        // and reading the answer, so a timeout is always told as one.
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("paas-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            authorization,
            account: account.to_owned(),
            timeout,
        })
    }

    fn tunnel_path(&self, tunnel: &str) -> String {
        format!("/accounts/{}/cfd_tunnel/{tunnel}", self.account)
    }

    /// The shared tunnel's configuration.
    pub async fn get_config(&self, tunnel: &str) -> Result<TunnelConfig, CfError> {
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
    pub async fn put_config(&self, tunnel: &str, config: &Value) -> Result<i64, CfError> {
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
    pub async fn list_dns(
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

    pub async fn create_dns(&self, zone: &str, body: &Value) -> Result<DnsRecord, CfError> {
        let path = format!("/zones/{zone}/dns_records");
        let result = self
            .call("create_dns", Method::POST, &path, &[], Some(body))
            .await?
            .result;
        parse("create_dns", result)
    }

    pub async fn update_dns(
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
    pub async fn delete_dns(&self, zone: &str, id: &str) -> Result<(), CfError> {
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
    pub async fn create_tunnel(&self, name: &str, secret: &str) -> Result<CfTunnel, CfError> {
        let path = format!("/accounts/{}/cfd_tunnel", self.account);
        let body = json!({ "name": name, "tunnel_secret": secret, "config_src": "cloudflare" });
        let result = self
            .call("create_tunnel", Method::POST, &path, &[], Some(&body))
            .await?
            .result;
        parse("create_tunnel", result)
    }

    pub async fn get_tunnel(&self, tunnel: &str) -> Result<CfTunnel, CfError> {
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
    pub async fn tunnel_token(&self, tunnel: &str) -> Result<String, CfError> {
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
    pub async fn delete_tunnel(&self, tunnel: &str) -> Result<(), CfError> {
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

    /// One API call with its retries.
    async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Envelope, CfError> {
        // A POST that timed out may have been done: never sent twice.
        let idempotent = method != Method::POST;
        let url = format!("{}{path}", self.base);
        let mut attempt = 1;
        loop {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, self.authorization.clone())
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let started = Instant::now();
            let deadline = crate::bounded::deadline_in(self.timeout);
            let failed = |error: &reqwest::Error| {
                let error = transport(operation, error);
                crate::metrics::cloudflare_request(
                    operation,
                    transport_label(&error),
                    started.elapsed(),
                );
                (error, None)
            };
            // The deadline covers sending and reading the whole answer.
            let sent = tokio::time::timeout_at(deadline, request.send()).await;
            let failure = match sent {
                Err(_elapsed) => {
                    let error = unread(operation, ReadError::TimedOut);
                    crate::metrics::cloudflare_request(operation, "timeout", started.elapsed());
                    (error, None)
                }
                Ok(Err(error)) => failed(&error),
                Ok(Ok(response)) => {
                    let status = response.status();
                    let retry_after = retry_after(response.headers().get(RETRY_AFTER));
                    let response: http::Response<reqwest::Body> = response.into();
                    match read_body(response.into_body(), MAX_ANSWER, deadline).await {
                        Ok(bytes) => {
                            let answer = answer(operation, status, &bytes);
                            let outcome = outcome_label(&answer, status);
                            crate::metrics::cloudflare_request(
                                operation,
                                outcome,
                                started.elapsed(),
                            );
                            match answer {
                                Ok(envelope) => return Ok(envelope),
                                Err(error) => (error, retry_after),
                            }
                        }
                        Err(error) => {
                            let error = unread(operation, error);
                            let label = match &error {
                                CfError::Unreadable { .. } => "unreadable",
                                other => transport_label(other),
                            };
                            crate::metrics::cloudflare_request(operation, label, started.elapsed());
                            (error, None)
                        }
                    }
                }
            };
            let (error, retry_after) = failure;
            let retryable = match &error {
                CfError::Status { status, .. } => *status == 429 || *status >= 500,
                CfError::Timeout { .. } | CfError::Unreachable { .. } => idempotent,
                CfError::Unreadable { .. } => false,
            };
            if !retryable || attempt >= MAX_ATTEMPTS {
                return Err(error);
            }
            let wait = retry_after
                .map(|wait| wait.min(MAX_RETRY_AFTER))
                .unwrap_or_else(|| backoff(attempt));
            tracing::info!(operation, attempt, wait_ms = wait.as_millis() as u64, %error, "retrying a Cloudflare call");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Reads an answer: success, or an error with Cloudflare's reason logged.
fn answer(operation: &'static str, status: StatusCode, bytes: &[u8]) -> Result<Envelope, CfError> {
    let envelope: Option<Envelope> = serde_json::from_slice(bytes).ok();
    match envelope {
        Some(envelope) if status.is_success() && envelope.success => Ok(envelope),
        Some(envelope) => {
            let first = envelope.errors.first();
            let code = first.and_then(|m| m.code);
            let message: String = first
                .map(|m| m.message.chars().take(300).collect())
                .unwrap_or_default();
            tracing::warn!(operation, status = status.as_u16(), cloudflare_code = ?code, cloudflare_message = %message, "Cloudflare refused a call");
            Err(CfError::Status {
                operation,
                status: if status.is_success() {
                    502
                } else {
                    status.as_u16()
                },
                code,
            })
        }
        None if !status.is_success() => {
            tracing::warn!(
                operation,
                status = status.as_u16(),
                "Cloudflare answered an error without its envelope"
            );
            Err(CfError::Status {
                operation,
                status: status.as_u16(),
                code: None,
            })
        }
        None => {
            tracing::warn!(
                operation,
                status = status.as_u16(),
                "Cloudflare's answer is not its envelope"
            );
            Err(CfError::Unreadable { operation })
        }
    }
}

fn transport(operation: &'static str, error: &reqwest::Error) -> CfError {
    // reqwest's text names the URL (ids only) and the cause, never headers.
    tracing::warn!(operation, error = %error, "Cloudflare call failed");
    if error.is_timeout() {
        CfError::Timeout { operation }
    } else {
        CfError::Unreachable { operation }
    }
}

/// An answer that was not read whole: too large, too slow, or cut off.
fn unread(operation: &'static str, error: ReadError) -> CfError {
    tracing::warn!(operation, %error, "Cloudflare's answer was not read");
    match error {
        ReadError::TooLarge { .. } => CfError::Unreadable { operation },
        ReadError::TimedOut => CfError::Timeout { operation },
        ReadError::Failed => CfError::Unreachable { operation },
    }
}

fn outcome_label(answer: &Result<Envelope, CfError>, status: StatusCode) -> &'static str {
    match answer {
        Ok(_) => "success",
        Err(CfError::Unreadable { .. }) => "unreadable",
        Err(_) if status == StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        Err(_) if status.is_server_error() => "server_error",
        Err(_) => "client_error",
    }
}

fn transport_label(error: &CfError) -> &'static str {
    match error {
        CfError::Timeout { .. } => "timeout",
        _ => "unreachable",
    }
}

fn parse<T: DeserializeOwned>(operation: &'static str, value: Value) -> Result<T, CfError> {
    serde_json::from_value(value).map_err(|error| {
        tracing::warn!(operation, %error, "Cloudflare's result has an unexpected shape");
        CfError::Unreadable { operation }
    })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Cloudflare).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// 250 ms, 500 ms, 1 s, …, ±25 %.
fn backoff(attempt: u32) -> Duration {
    let base = FIRST_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1));
    let jitter = rand::random_range(0.75..1.25);
    base.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn answers_are_read_from_the_envelope() {
        let ok = answer(
            "x",
            StatusCode::OK,
            br#"{"success":true,"errors":[],"result":{"version":3}}"#,
        )
        .unwrap();
        assert_eq!(ok.result["version"], 3);
        let refused = answer(
            "x",
            StatusCode::BAD_REQUEST,
            br#"{"success":false,"errors":[{"code":1055,"message":"Bad Configuration"}],"result":null}"#,
        );
        assert_eq!(
            refused.unwrap_err(),
            CfError::Status {
                operation: "x",
                status: 400,
                code: Some(1055)
            }
        );
        let gateway = answer("x", StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(gateway.unwrap_err().is_unavailable());
        let junk = answer("x", StatusCode::OK, b"not json");
        assert_eq!(junk.unwrap_err(), CfError::Unreadable { operation: "x" });
    }

    #[tokio::test]
    async fn an_endless_or_stalled_answer_is_a_clean_failure() {
        use crate::bounded::tests::{Endless, endless_server, resident_bytes};
        let token = SecretString::from("t".to_owned());
        for (how, expected) in [
            (
                Endless::Flood,
                CfError::Unreadable {
                    operation: "get_config",
                },
            ),
            (
                Endless::Declared,
                CfError::Unreadable {
                    operation: "get_config",
                },
            ),
            (
                Endless::Trickle,
                CfError::Timeout {
                    operation: "get_config",
                },
            ),
        ] {
            let address = endless_server(how).await;
            let base = format!("http://{address}");
            let cloudflare = Cloudflare::new(&base, &token, "acc", Duration::from_secs(1)).unwrap();
            let before = resident_bytes();
            let started = Instant::now();
            let failed = cloudflare.get_config("tunnel").await.unwrap_err();
            assert_eq!(failed, expected);
            // A timeout is retried (idempotent GET): three attempts of 1 s
            // and the backoff between them.
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "{:?}",
                started.elapsed()
            );
            let grown = resident_bytes().saturating_sub(before);
            assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");
        }
    }

    #[test]
    fn retry_after_and_backoff_are_bounded() {
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("2"))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        for attempt in 1..=MAX_ATTEMPTS {
            let wait = backoff(attempt);
            assert!(wait >= Duration::from_millis(187) && wait <= Duration::from_millis(1250));
        }
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
