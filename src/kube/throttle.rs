//! The API server's "not now": when it is at its limit of requests in
//! flight (`--max-requests-inflight`, `--max-mutating-requests-inflight`)
//! or API Priority and Fairness sheds a request, it answers 429 with
//! `Retry-After` *before* handling the request, so sending it again is safe
//! for writes too. client-go (and so helm) resends such requests; a client
//! built here does the same, a few times and briefly, so that one tenant's
//! burst of creates (helm creates a kind's objects in parallel) does not
//! turn another tenant's write into a 503. Only 429 is resent: a 503 or
//! 504 may come after the request was handled, and a transport failure is
//! an outage, answered at once (see [`super::for_requests`]).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::{Body, ClientBuilder};
use tower::BoxError;
use tower::buffer::BufferLayer;
use tower::retry::{Policy, RetryLayer};

/// How many times one request is resent after a 429.
pub const RESENDS: u32 = 5;
/// The longest wait before one resend, whatever `Retry-After` says (the
/// API server says 1 s): [`RESENDS`] × this bounds what a throttled call
/// adds, well below the platform's 30 s.
pub const LONGEST_WAIT: Duration = Duration::from_secs(1);
/// The first wait when the answer gives no `Retry-After`; doubled per resend.
const FIRST_WAIT: Duration = Duration::from_millis(200);
/// Requests queued in front of the resending layer (the client's own
/// buffer in front of it is as large).
const QUEUE: usize = 1024;

/// A Kubernetes client from `config` that resends requests refused with 429.
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    Ok(ClientBuilder::try_from(config)?
        .with_layer(&BufferLayer::new(QUEUE))
        .with_layer(&RetryLayer::new(Throttled::default()))
        .build())
}

/// The resend policy: one per request (tower clones it for each call).
#[derive(Clone, Debug, Default)]
pub struct Throttled {
    resent: u32,
}

impl Throttled {
    /// How long to wait before resending after an answer with `status` and
    /// `retry_after` (the header's value), or `None` to keep the answer.
    pub fn wait(&self, status: StatusCode, retry_after: Option<&str>) -> Option<Duration> {
        if status != StatusCode::TOO_MANY_REQUESTS || self.resent >= RESENDS {
            return None;
        }
        let asked = retry_after
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let backoff = FIRST_WAIT.saturating_mul(1 << self.resent);
        Some(asked.unwrap_or(backoff).min(LONGEST_WAIT))
    }
}

impl<B> Policy<Request<Body>, Response<B>, BoxError> for Throttled {
    type Future = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn retry(
        &mut self,
        request: &mut Request<Body>,
        result: &mut Result<Response<B>, BoxError>,
    ) -> Option<Self::Future> {
        let response = result.as_ref().ok()?;
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok());
        let wait = self.wait(response.status(), retry_after)?;
        self.resent += 1;
        tracing::debug!(
            method = %request.method(),
            path = request.uri().path(),
            resend = self.resent,
            wait_ms = wait.as_millis() as u64,
            "the API server is throttling; resending"
        );
        crate::metrics::kube_throttled();
        Some(Box::pin(tokio::time::sleep(wait)))
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        // A streamed body cannot be sent twice; such a request is not resent.
        let body = request.body().try_clone()?;
        let mut copy = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .version(request.version())
            .body(body)
            .ok()?;
        *copy.headers_mut() = request.headers().clone();
        *copy.extensions_mut() = request.extensions().clone();
        Some(copy)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::Api;
    use kube::api::PostParams;

    use super::*;

    #[test]
    fn only_429_is_resent() {
        let policy = Throttled::default();
        for status in [
            StatusCode::OK,
            StatusCode::CONFLICT,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::GATEWAY_TIMEOUT,
        ] {
            assert_eq!(policy.wait(status, Some("1")), None, "{status}");
        }
        assert!(
            policy
                .wait(StatusCode::TOO_MANY_REQUESTS, Some("1"))
                .is_some()
        );
    }

    #[test]
    fn retry_after_is_followed_up_to_the_longest_wait() {
        let policy = Throttled::default();
        let wait = |header| policy.wait(StatusCode::TOO_MANY_REQUESTS, header);
        assert_eq!(wait(Some("1")), Some(Duration::from_secs(1)));
        assert_eq!(wait(Some(" 0 ")), Some(Duration::ZERO));
        assert_eq!(wait(Some("3600")), Some(LONGEST_WAIT));
        // An unreadable or missing header: the doubling backoff.
        assert_eq!(wait(Some("soon")), Some(FIRST_WAIT));
        assert_eq!(wait(None), Some(FIRST_WAIT));
    }

    #[test]
    fn a_request_is_resent_a_bounded_number_of_times() {
        let mut policy = Throttled::default();
        let mut waits = Vec::new();
        while let Some(wait) = policy.wait(StatusCode::TOO_MANY_REQUESTS, None) {
            waits.push(wait);
            policy.resent += 1;
        }
        assert_eq!(waits.len(), RESENDS as usize);
        assert_eq!(
            waits,
            [200, 400, 800, 1000, 1000]
                .map(Duration::from_millis)
                .to_vec()
        );
        let total: Duration = waits.iter().sum();
        assert!(total <= LONGEST_WAIT * RESENDS);
    }

    /// An API server that answers 429 (`Retry-After: 0`) to the first
    /// `refusals` requests and echoes the body of every later one; it
    /// records every body it was sent.
    async fn throttling_server(refusals: usize) -> (kube::Client, Arc<Mutex<Vec<String>>>) {
        use axum::response::IntoResponse;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let router = axum::Router::new().fallback(move |body: String| {
            let log = log.clone();
            async move {
                let mut log = log.lock().expect("log");
                log.push(body.clone());
                if log.len() <= refusals {
                    let status = serde_json::json!({"kind": "Status", "apiVersion": "v1",
                        "status": "Failure", "code": 429, "reason": "TooManyRequests",
                        "message": "Too many requests, please try again later."});
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [(http::header::RETRY_AFTER, "0")],
                        axum::Json(status),
                    )
                        .into_response();
                }
                (StatusCode::CREATED, body).into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await });
        // As the operator configures it: kube's own resending is off.
        let config = super::super::for_requests(kube::Config::new(url.parse().expect("url")));
        (client(config).expect("client"), seen)
    }

    fn a_lease() -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("paas-operator.app".into()),
                namespace: Some("paas-ws-a".into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_write_refused_with_429_is_resent_with_its_body_and_succeeds() {
        let (client, seen) = throttling_server(2).await;
        let leases: Api<Lease> = Api::namespaced(client, "paas-ws-a");
        let created = leases
            .create(&PostParams::default(), &a_lease())
            .await
            .expect("created after two refusals");
        assert_eq!(created.metadata.name.as_deref(), Some("paas-operator.app"));
        let seen = seen.lock().expect("log");
        assert_eq!(seen.len(), 3, "two refusals, then the write");
        assert!(seen.iter().all(|body| body == &seen[0]), "{seen:?}");
        assert!(seen[0].contains("paas-operator.app"));
    }

    #[tokio::test]
    async fn a_server_that_keeps_refusing_gets_a_bounded_number_of_resends() {
        let (client, seen) = throttling_server(usize::MAX).await;
        let leases: Api<Lease> = Api::namespaced(client, "paas-ws-a");
        let error = leases
            .create(&PostParams::default(), &a_lease())
            .await
            .expect_err("still refused");
        assert!(
            matches!(&error, kube::Error::Api(status) if status.code == 429),
            "{error:?}"
        );
        assert!(super::super::is_unreachable(&error));
        assert_eq!(seen.lock().expect("log").len(), 1 + RESENDS as usize);
    }
}
