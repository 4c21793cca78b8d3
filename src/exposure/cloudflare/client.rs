//! The Cloudflare client itself: its credentials, limits and errors.
//! `call.rs` sends a request through it, `mod.rs` holds the API calls.

use std::time::Duration;

use reqwest::header::HeaderValue;

use crate::config::SecretString;

/// Attempts per call (the first and two retries).
pub(crate) const MAX_ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured; a longer one is cut to this.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);
/// Largest answer read: a DNS page of 500 records is about
/// 250 KiB, the shared tunnel's configuration about 200 bytes per route
/// (8 MiB: some 40,000 routes).
pub(crate) const MAX_ANSWER: usize = 8 << 20;

/// Why a Cloudflare call failed. Cheap to clone: the outcome of one shared
/// configuration edit is handed to every request that waited for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CfError {
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
    pub(crate) fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Worth trying again later (as opposed to a refusal).
    pub(crate) fn is_unavailable(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Timeout { .. } | Self::Unreachable { .. } => true,
            Self::Unreadable { .. } => false,
        }
    }
}

/// A client for one Cloudflare account.
#[derive(Clone)]
pub(crate) struct Cloudflare {
    pub(super) http: reqwest::Client,
    pub(super) base: String,
    pub(super) authorization: HeaderValue,
    pub(super) account: String,
    /// CLOUDFLARE_TIMEOUT: one attempt, answer read in full included.
    pub(super) timeout: Duration,
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
    pub(crate) fn new(
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
}
