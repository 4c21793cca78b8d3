//! Every outbound request of a chart fetch: to allowed hosts only (each
//! redirect hop and a registry's token service checked before any
//! connection), bounded in time and size, and with the anonymous Bearer
//! token flow registries use (`401` + `WWW-Authenticate: Bearer realm=…`).
//!
//! - Redirects are followed here, at most [`MAX_REDIRECTS`], never from
//!   `https` down to `http`; a token goes only to the registry that asked
//!   for it, never to the host a blob is redirected to.
//! - Connecting takes at most [`CONNECT_TIMEOUT`], each read of an answer
//!   at most [`READ_TIMEOUT`]; the caller bounds the whole fetch.
//! - Every body is read against a cap given by the caller, and a declared
//!   `Content-Length` over it is refused before reading.
//! - No environment proxy is used: the operator connects itself, as its
//!   egress guard did for helm.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode, Url};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::names::AllowedHosts;

/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// Longest wait for a TCP (and TLS) connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of an answer.
pub const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Largest token answer read.
pub const MAX_TOKEN_BODY: u64 = 64 << 10;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL, a redirect or a token service names a host that is not an
    /// allowed chart source (or a scheme other than http(s), or goes from
    /// https down to http).
    #[error("refused to reach {0}: not an allowed chart host")]
    NotAllowed(String),
    /// No connection, a timeout, a TLS failure.
    #[error("cannot reach {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The final answer was not a success.
    #[error("{url} answered {status}")]
    Status { url: String, status: StatusCode },
    /// An answer was larger than the operator reads.
    #[error("{url} answered more than {cap} bytes")]
    TooLarge { url: String, cap: u64 },
    /// An answer could not be understood (a bad redirect, token or body).
    #[error("{url} answered something unreadable: {why}")]
    Invalid { url: String, why: &'static str },
    /// A download could not be written to the cache directory.
    #[error("cannot write a download: {0}")]
    Local(std::io::Error),
}

/// A Bearer challenge from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub service: Option<String>,
    pub scope: Option<String>,
}

/// Tokens are cached per registry and repository.
type TokenKey = (String, String);

/// The HTTP client of chart fetches; cheap to share.
pub struct Http {
    client: reqwest::Client,
    allowed: AllowedHosts,
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

/// Where a request may carry a registry token.
#[derive(Debug, Clone, Copy)]
pub struct Registry<'a> {
    /// The repository the token is for (`bitnamicharts/postgresql`).
    pub repository: &'a str,
}

impl Http {
    pub fn new(allowed: AllowedHosts) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("paas-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allowed,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// GETs `url` (redirects followed and checked); with `registry`, a
    /// `401` Bearer challenge is answered with an anonymous token once.
    /// Returns the final answer when it is a success.
    pub async fn get(
        &self,
        url: Url,
        accept: &[&str],
        registry: Option<Registry<'_>>,
    ) -> Result<Response, FetchError> {
        let origin = authority(&url).ok_or_else(|| FetchError::NotAllowed(url.to_string()))?;
        let key = registry.map(|r| (origin.clone(), r.repository.to_owned()));
        let cached = key.as_ref().and_then(|key| self.cached_token(key));
        let response = self
            .follow(
                url.clone(),
                accept,
                cached.as_deref().map(|t| (origin.as_str(), t)),
            )
            .await?;
        let challenge = match &key {
            Some(_) if response.status() == StatusCode::UNAUTHORIZED => bearer_challenge(&response),
            _ => None,
        };
        let (Some(key), Some(challenge)) = (key, challenge) else {
            return success(response);
        };
        let token = self.token(&url, &challenge).await?;
        self.remember_token(key, &token);
        let response = self
            .follow(url, accept, Some((origin.as_str(), token.0.as_str())))
            .await?;
        success(response)
    }

    /// One GET, following redirects; `bearer` goes only to its host.
    async fn follow(
        &self,
        mut url: Url,
        accept: &[&str],
        bearer: Option<(&str, &str)>,
    ) -> Result<Response, FetchError> {
        self.check(&url, None)?;
        for _ in 0..=MAX_REDIRECTS {
            let mut request = self.client.get(url.clone());
            if !accept.is_empty() {
                request = request.header(ACCEPT, accept.join(", "));
            }
            if let Some((host, token)) = bearer
                && authority(&url).as_deref() == Some(host)
            {
                request = request.header(AUTHORIZATION, format!("Bearer {token}"));
            }
            let response = request
                .send()
                .await
                .map_err(|source| FetchError::Unreachable {
                    url: url.to_string(),
                    source,
                })?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|location| location.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or_else(|| FetchError::Invalid {
                    url: url.to_string(),
                    why: "a redirect without a usable Location",
                })?;
            self.check(&next, Some(&url))?;
            url = next;
        }
        Err(FetchError::Invalid {
            url: url.to_string(),
            why: "too many redirects",
        })
    }

    /// Refuses a URL that is not http(s), goes from https down to http
    /// (after `from`), or names a host that is not allowed.
    fn check(&self, url: &Url, from: Option<&Url>) -> Result<(), FetchError> {
        let scheme_ok = match url.scheme() {
            "https" => true,
            "http" => from.is_none_or(|from| from.scheme() == "http"),
            _ => false,
        };
        let allowed = scheme_ok
            && url.username().is_empty()
            && url.password().is_none()
            && authority(url).is_some_and(|target| self.allowed.admits(&target));
        if allowed {
            return Ok(());
        }
        tracing::warn!(url = %without_query(url), "refused: a chart download would reach a host that is not an allowed chart source");
        crate::metrics::egress_refused();
        Err(FetchError::NotAllowed(without_query(url)))
    }

    /// An anonymous token from the challenge's realm.
    async fn token(
        &self,
        url: &Url,
        challenge: &Challenge,
    ) -> Result<(String, Duration), FetchError> {
        let invalid = |why| FetchError::Invalid {
            url: without_query(url),
            why,
        };
        let mut realm = Url::parse(&challenge.realm).map_err(|_| invalid("a bad token realm"))?;
        if url.scheme() == "https" && realm.scheme() != "https" {
            return Err(FetchError::NotAllowed(without_query(&realm)));
        }
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            if let Some(scope) = &challenge.scope {
                query.append_pair("scope", scope);
            }
        }
        let response = success(
            self.follow(realm.clone(), &["application/json"], None)
                .await?,
        )?;
        let body = read_body(response, MAX_TOKEN_BODY).await?;
        parse_token(&body).ok_or_else(|| FetchError::Invalid {
            url: without_query(&realm),
            why: "a token answer without a token",
        })
    }

    fn cached_token(&self, key: &TokenKey) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(key)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    fn remember_token(&self, key: TokenKey, (token, lifetime): &(String, Duration)) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        tokens.retain(|_, (_, until)| now < *until);
        // Bounded: one per repository fetched from within a token's life.
        if tokens.len() < 1024 {
            tokens.insert(key, (token.clone(), now + *lifetime));
        }
    }
}

/// `host:port` of a URL (the default port filled in), lower-cased.
pub fn authority(url: &Url) -> Option<String> {
    let host = url.host_str()?;
    let port = url.port_or_known_default()?;
    Some(format!("{host}:{port}").to_ascii_lowercase())
}

/// A URL for logs and errors: no query (it may carry a token request).
pub fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

fn success(response: Response) -> Result<Response, FetchError> {
    if response.status().is_success() {
        Ok(response)
    } else {
        Err(FetchError::Status {
            url: without_query(response.url()),
            status: response.status(),
        })
    }
}

/// The Bearer challenge of a `401`, if it has one.
fn bearer_challenge(response: &Response) -> Option<Challenge> {
    response
        .headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(parse_challenge)
}

/// Parses `Bearer realm="…",service="…",scope="…"` (parameters in any
/// order, quoted or not; a comma inside quotes is part of the value).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim_start();
    let (scheme, rest) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut params: HashMap<String, String> = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    Some(Challenge {
        realm: params.remove("realm").filter(|r| !r.is_empty())?,
        service: params.remove("service"),
        scope: params.remove("scope"),
    })
}

/// `{"token": …}` or `{"access_token": …}`, and how long to keep it
/// (`expires_in`, 60 s when absent, as the distribution spec says; kept
/// 10 s less).
pub fn parse_token(body: &[u8]) -> Option<(String, Duration)> {
    #[derive(serde::Deserialize)]
    struct Answer {
        token: Option<String>,
        access_token: Option<String>,
        expires_in: Option<u64>,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let token = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))?;
    let lifetime = answer.expires_in.unwrap_or(60).clamp(10, 3600) - 10;
    Some((token, Duration::from_secs(lifetime)))
}

/// Reads a whole body, refusing more than `cap` bytes.
pub async fn read_body(mut response: Response, cap: u64) -> Result<Vec<u8>, FetchError> {
    let url = without_query(response.url());
    let too_large = || FetchError::TooLarge {
        url: url.clone(),
        cap,
    };
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| FetchError::Unreachable {
            url: url.clone(),
            source,
        })?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Streams a body into the new file `to`, refusing more than `cap` bytes;
/// returns its size and sha256 (hex).
pub async fn download(
    mut response: Response,
    cap: u64,
    to: &Path,
) -> Result<(u64, String), FetchError> {
    let url = without_query(response.url());
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(FetchError::TooLarge { url, cap });
    }
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .await
        .map_err(FetchError::Local)?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| FetchError::Unreachable {
            url: url.clone(),
            source,
        })?
    {
        size += chunk.len() as u64;
        if size > cap {
            return Err(FetchError::TooLarge { url, cap });
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(FetchError::Local)?;
    }
    file.flush().await.map_err(FetchError::Local)?;
    Ok((size, hex(&hasher.finalize())))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
pub(crate) mod tests;
