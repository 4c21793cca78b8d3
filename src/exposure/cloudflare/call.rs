//! One Cloudflare API call: sent with its deadline, its answer read
//! (bounded) and checked, counted in the metrics, and retried on 429, 5xx
//! and transport failures of idempotent calls.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::{CfError, Cloudflare, MAX_ANSWER, MAX_ATTEMPTS, MAX_RETRY_AFTER};
use crate::bounded::{ReadError, read_body};

/// First backoff without `Retry-After`; doubled per attempt, ±25 %.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Cloudflare's answer envelope.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<Message>,
    #[serde(default)]
    pub(super) result: Value,
    pub(super) result_info: Option<ResultInfo>,
}

#[derive(Debug, Deserialize)]
struct Message {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct ResultInfo {
    pub(super) total_pages: Option<usize>,
}

/// What one request is: an operation sent as `method` to `url`.
struct Request<'a> {
    operation: &'static str,
    method: Method,
    url: String,
    query: &'a [(&'a str, &'a str)],
    body: Option<&'a Value>,
}

/// A failed attempt, and the `Retry-After` Cloudflare sent with it.
type Failure = (CfError, Option<Duration>);

impl Cloudflare {
    /// One API call with its retries.
    pub(super) async fn call(
        &self,
        operation: &'static str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Envelope, CfError> {
        // A POST that timed out may have been done: never sent twice.
        let idempotent = method != Method::POST;
        let request = Request {
            operation,
            method,
            url: format!("{}{path}", self.base),
            query,
            body,
        };
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match self.attempt(&request).await {
                Ok(envelope) => return Ok(envelope),
                Err(failure) => failure,
            };
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

    /// One attempt, counted in the metrics; its deadline covers sending
    /// and reading the whole answer.
    async fn attempt(&self, request: &Request<'_>) -> Result<Envelope, Failure> {
        let operation = request.operation;
        let mut sending = self
            .http
            .request(request.method.clone(), &request.url)
            .header(AUTHORIZATION, self.authorization.clone())
            .query(request.query);
        if let Some(body) = request.body {
            sending = sending.json(body);
        }
        let started = Instant::now();
        let deadline = crate::bounded::deadline_in(self.timeout);
        let counted = |error: CfError, label: &'static str| {
            crate::metrics::cloudflare_request(operation, label, started.elapsed());
            (error, None)
        };
        let response = match tokio::time::timeout_at(deadline, sending.send()).await {
            Err(_elapsed) => {
                return Err(counted(unread(operation, ReadError::TimedOut), "timeout"));
            }
            Ok(Err(error)) => {
                let error = transport(operation, &error);
                let label = transport_label(&error);
                return Err(counted(error, label));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        let retry_after = retry_after(response.headers().get(RETRY_AFTER));
        let response: http::Response<reqwest::Body> = response.into();
        let bytes = match read_body(response.into_body(), MAX_ANSWER, deadline).await {
            Ok(bytes) => bytes,
            Err(error) => {
                let error = unread(operation, error);
                let label = match &error {
                    CfError::Unreadable { .. } => "unreadable",
                    other => transport_label(other),
                };
                return Err(counted(error, label));
            }
        };
        let answer = answer(operation, status, &bytes);
        let outcome = outcome_label(&answer, status);
        crate::metrics::cloudflare_request(operation, outcome, started.elapsed());
        answer.map_err(|error| (error, retry_after))
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

pub(super) fn parse<T: DeserializeOwned>(
    operation: &'static str,
    value: Value,
) -> Result<T, CfError> {
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
    use crate::config::SecretString;

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
}
