//! How the operator reaches an app's HTTP API inside a tenant namespace:
//! `Direct` by its Service's cluster DNS name (the operator runs in the
//! cluster; the tenant's NetworkPolicy admits the operator's namespace), or
//! `ApiProxy` through the Kubernetes API server's service proxy
//! (`…/services/{name}:{port}/proxy/…`; RBAC `services/proxy` in tenant
//! namespaces only), which also works from outside the cluster.
//!
//! The app is the tenant's: whichever way, one call (connecting, sending,
//! and reading the whole answer) ends within [`CALL_TIMEOUT`] and reads at
//! most [`MAX_ANSWER`] bytes ([`crate::bounded`]); beyond either the call
//! fails, and the bootstrap answers `success: false` for that step.

use std::time::Duration;

use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::Value;

use crate::bounded::{ReadError, deadline_in, read_body};

/// Longest one call may take, answer included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest answer read (n8n's largest answer the bootstrap reads, its
/// settings, is about 10 KiB).
pub const MAX_ANSWER: usize = 1 << 20;
/// The session cookie n8n sets.
const SESSION_COOKIE: &str = "n8n-auth";

/// Where n8n is: its Service and port in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// An answer: status, JSON body (`Null` when not JSON), session cookie.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub json: Value,
    /// `n8n-auth=…` when the answer set it.
    pub session: Option<String>,
}

/// The way to the app.
#[derive(Clone)]
pub enum Transport {
    /// `http://{service}.{namespace}.svc.cluster.local:{port}`.
    Direct { base: String, http: reqwest::Client },
    /// Through the API server: the operator's own client.
    ApiProxy {
        client: kube::Client,
        prefix: String,
    },
}

impl Transport {
    pub fn direct(endpoint: &Endpoint) -> Self {
        let base = format!(
            "http://{}.{}.svc.cluster.local:{}",
            endpoint.service, endpoint.namespace, endpoint.port
        );
        // The call's own deadline covers sending and reading the answer.
        let http = reqwest::Client::builder()
            .connect_timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self::Direct { base, http }
    }

    pub fn api_proxy(client: kube::Client, endpoint: &Endpoint) -> Self {
        let prefix = format!(
            "/api/v1/namespaces/{}/services/{}:{}/proxy",
            endpoint.namespace, endpoint.service, endpoint.port
        );
        Self::ApiProxy { client, prefix }
    }

    /// One call: `path` from the app's root, a JSON body, the session.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        session: Option<&str>,
    ) -> Result<Reply, String> {
        let method = http::Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?;
        let payload = body.map(Value::to_string).unwrap_or_default();
        let deadline = deadline_in(CALL_TIMEOUT);
        match self {
            Self::Direct { base, http } => {
                let mut request = http.request(method, format!("{base}{path}"));
                if body.is_some() {
                    request = request
                        .header(CONTENT_TYPE, "application/json")
                        .body(payload);
                }
                if let Some(session) = session {
                    request = request.header(COOKIE, session);
                }
                let response = tokio::time::timeout_at(deadline, request.send())
                    .await
                    .map_err(|_| ReadError::TimedOut.to_string())?
                    .map_err(|e| without_url(&e))?;
                let status = response.status().as_u16();
                let cookie = session_cookie(response.headers());
                let response: http::Response<reqwest::Body> = response.into();
                let bytes = read_body(response.into_body(), MAX_ANSWER, deadline)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(reply(status, &bytes, cookie))
            }
            Self::ApiProxy { client, prefix } => {
                let mut request = http::Request::builder()
                    .method(method)
                    .uri(format!("{prefix}{path}"));
                if body.is_some() {
                    request = request.header(CONTENT_TYPE, "application/json");
                }
                if let Some(session) = session {
                    request = request.header(COOKIE, session);
                }
                let request = request
                    .body(payload.into_bytes())
                    .map_err(|e| e.to_string())?;
                let response =
                    tokio::time::timeout_at(deadline, client.send(request.map(Into::into)))
                        .await
                        .map_err(|_| ReadError::TimedOut.to_string())?
                        .map_err(|e| match e {
                            kube::Error::Api(status) => {
                                format!("the API server answered {}", status.code)
                            }
                            _ => "the API server could not be reached".to_owned(),
                        })?;
                let status = response.status().as_u16();
                let cookie = session_cookie(response.headers());
                let bytes = read_body(response.into_body(), MAX_ANSWER, deadline)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(reply(status, &bytes, cookie))
            }
        }
    }
}

fn reply(status: u16, bytes: &[u8], session: Option<String>) -> Reply {
    let json = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    Reply {
        status,
        json,
        session,
    }
}

/// `n8n-auth=<value>` from the answer's `Set-Cookie` headers.
fn session_cookie(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .find(|pair| pair.trim_start().starts_with(&format!("{SESSION_COOKIE}=")))
        .map(|pair| pair.trim().to_owned())
}

/// A transport error's text without the URL (which is ours, but the
/// habit keeps addresses out of answers).
fn without_url(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        "the request failed".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_session_cookie_is_kept() {
        let mut headers = http::HeaderMap::new();
        headers.append(SET_COOKIE, "other=1; Path=/".parse().unwrap());
        headers.append(
            SET_COOKIE,
            "n8n-auth=eyJ.x.y; Max-Age=604800; Path=/; HttpOnly; Secure; SameSite=Lax"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            session_cookie(&headers).as_deref(),
            Some("n8n-auth=eyJ.x.y")
        );
        assert_eq!(session_cookie(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn an_app_answering_without_end_fails_the_call_cleanly() {
        use crate::bounded::tests::{Endless, endless_server, resident_bytes};
        for how in [Endless::Flood, Endless::Declared] {
            let address = endless_server(how).await;
            let transport = Transport::Direct {
                base: format!("http://{address}"),
                http: reqwest::Client::new(),
            };
            let before = resident_bytes();
            let failed = transport
                .call(
                    "POST",
                    "/rest/owner/setup",
                    Some(&serde_json::json!({})),
                    None,
                )
                .await
                .unwrap_err();
            assert_eq!(failed, "the answer is larger than 1024 KiB");
            let grown = resident_bytes().saturating_sub(before);
            assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");
        }
    }

    #[test]
    fn answers_that_are_not_json_read_as_null() {
        let starting = reply(200, b"n8n is starting up. Please wait", None);
        assert!(starting.json.is_null());
        assert_eq!(
            reply(200, br#"{"data":{}}"#, None).json["data"],
            serde_json::json!({})
        );
    }
}
