//! Unit tests of chart downloads against in-process servers: allowed hosts, redirects, caps, registry tokens.

use super::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::{HeaderMap, StatusCode as AxumStatus, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

/// Serves `router` on 127.0.0.1, a free port; returns `host:port`.
pub(crate) async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

fn http(allowed: &[&str]) -> Http {
    Http::new(AllowedHosts::new(allowed.iter().map(|s| (*s).to_owned()))).expect("client")
}

#[test]
fn challenges_are_parsed_in_any_order_and_quoting() {
    let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:bitnamicharts/redis:pull""#;
    assert_eq!(
        parse_challenge(hub),
        Some(Challenge {
            realm: "https://auth.docker.io/token".into(),
            service: Some("registry.docker.io".into()),
            scope: Some("repository:bitnamicharts/redis:pull".into()),
        })
    );
    let harbor = r#"bearer scope="repository:library/n8n:pull,push", realm="https://8gears.container-registry.com/service/token",service=harbor-registry"#;
    let parsed = parse_challenge(harbor).expect("parsed");
    assert_eq!(
        parsed.realm,
        "https://8gears.container-registry.com/service/token"
    );
    assert_eq!(parsed.service.as_deref(), Some("harbor-registry"));
    assert_eq!(
        parsed.scope.as_deref(),
        Some("repository:library/n8n:pull,push")
    );
    assert_eq!(parse_challenge(r#"Basic realm="x""#), None);
    assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    assert_eq!(parse_challenge("Bearer"), None);
}

#[test]
fn tokens_are_read_from_either_field() {
    let (token, lifetime) = parse_token(br#"{"token":"abc","expires_in":300}"#).unwrap();
    assert_eq!((token.as_str(), lifetime.as_secs()), ("abc", 290));
    let (token, lifetime) = parse_token(br#"{"access_token":"xyz"}"#).unwrap();
    assert_eq!((token.as_str(), lifetime.as_secs()), ("xyz", 50));
    assert!(parse_token(br#"{"token":""}"#).is_none());
    assert!(parse_token(br#"{"token":"a\r\nInjected: 1"}"#).is_none());
    assert!(parse_token(b"not json").is_none());
}

#[tokio::test]
async fn redirects_are_followed_only_to_allowed_hosts() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let elsewhere = serve(Router::new().fallback(move || {
        counted.fetch_add(1, Ordering::SeqCst);
        async { "blob" }
    }))
    .await;
    let target = elsewhere.clone();
    let origin = serve(
        Router::new()
            .route(
                "/away",
                get(move || {
                    let target = target.clone();
                    async move { Redirect::temporary(&format!("http://{target}/blob")) }
                }),
            )
            .route(
                "/scheme",
                get(|| async { Redirect::temporary("file:///etc/hostname") }),
            )
            .route("/loop", get(|| async { Redirect::temporary("/loop") })),
    )
    .await;
    let url = |path: &str| Url::parse(&format!("http://{origin}{path}")).unwrap();
    // Not allowed: refused before connecting; the other host sees nothing.
    let strict = http(&[&origin]);
    assert!(matches!(
        strict.get(url("/away"), &[], None).await,
        Err(FetchError::NotAllowed(_))
    ));
    assert!(matches!(
        strict.get(url("/scheme"), &[], None).await,
        Err(FetchError::NotAllowed(_))
    ));
    assert!(matches!(
        strict.get(url("/loop"), &[], None).await,
        Err(FetchError::Invalid { .. })
    ));
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    // A host that is not allowed at all is not even asked.
    assert!(matches!(
        http(&[&elsewhere]).get(url("/away"), &[], None).await,
        Err(FetchError::NotAllowed(_))
    ));
    // Allowed: followed.
    let both = http(&[&origin, &elsewhere]);
    let answer = both.get(url("/away"), &[], None).await.expect("followed");
    assert_eq!(read_body(answer, 100).await.unwrap(), b"blob");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // `*`: any host.
    let any = Http::new(AllowedHosts::Any).expect("client");
    assert!(any.get(url("/away"), &[], None).await.is_ok());
}

#[tokio::test]
async fn bodies_are_capped_whatever_the_length_header_says() {
    let origin = serve(
        Router::new()
            .route("/declared", get(|| async { "x".repeat(1000) }))
            .route(
                "/chunked",
                get(|| async {
                    let chunks = futures::stream::iter(
                        (0..10).map(|_| Ok::<_, std::io::Error>("x".repeat(100))),
                    );
                    axum::body::Body::from_stream(chunks)
                }),
            ),
    )
    .await;
    let client = http(&[&origin]);
    for path in ["/declared", "/chunked"] {
        let url = Url::parse(&format!("http://{origin}{path}")).unwrap();
        let answer = client.get(url.clone(), &[], None).await.expect("answer");
        assert!(
            matches!(
                read_body(answer, 999).await,
                Err(FetchError::TooLarge { .. })
            ),
            "{path}"
        );
        let answer = client.get(url, &[], None).await.expect("answer");
        assert_eq!(read_body(answer, 1000).await.unwrap().len(), 1000);
    }
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_once_and_the_token_cached() {
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counted = token_requests.clone();
    let auth = serve(Router::new().route(
        "/token",
        get(move |query: axum::extract::RawQuery| {
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let query = query.0.unwrap_or_default();
                assert!(query.contains("service=reg"), "{query}");
                assert!(
                    query.contains("scope=repository%3Acharts%2Fweb%3Apull"),
                    "{query}"
                );
                axum::Json(serde_json::json!({"token": "t0k3n", "expires_in": 300}))
            }
        }),
    ))
    .await;
    let realm = format!("http://{auth}/token");
    let origin = serve(Router::new().route(
        "/v2/charts/web/manifests/1.0.0",
        get(move |headers: HeaderMap| {
            let realm = realm.clone();
            async move {
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
                    == Some("Bearer t0k3n")
                {
                    return "manifest".into_response();
                }
                (
                    AxumStatus::UNAUTHORIZED,
                    [(
                        header::WWW_AUTHENTICATE,
                        format!(r#"Bearer realm="{realm}",service="reg",scope="repository:charts/web:pull""#),
                    )],
                )
                    .into_response()
            }
        }),
    ))
    .await;
    let url = Url::parse(&format!("http://{origin}/v2/charts/web/manifests/1.0.0")).unwrap();
    let registry = Some(Registry {
        repository: "charts/web",
    });
    // The token service is not allowed: refused, never asked.
    let strict = http(&[&origin]);
    assert!(matches!(
        strict.get(url.clone(), &[], registry).await,
        Err(FetchError::NotAllowed(_))
    ));
    assert_eq!(token_requests.load(Ordering::SeqCst), 0);
    let client = http(&[&origin, &auth]);
    for _ in 0..3 {
        let answer = client
            .get(url.clone(), &[], registry)
            .await
            .expect("authorized");
        assert_eq!(read_body(answer, 100).await.unwrap(), b"manifest");
    }
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached"
    );
    // Without a registry, no token flow: the 401 is the answer.
    assert!(matches!(
        http(&[&origin, &auth]).get(url, &[], None).await,
        Err(FetchError::Status {
            status: StatusCode::UNAUTHORIZED,
            ..
        })
    ));
}

#[tokio::test]
async fn downloads_are_hashed_and_capped() {
    let origin = serve(Router::new().route("/f", get(|| async { "hello" }))).await;
    let client = http(&[&origin]);
    let dir = std::env::temp_dir().join(format!("charts-http-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = Url::parse(&format!("http://{origin}/f")).unwrap();
    let answer = client.get(url.clone(), &[], None).await.unwrap();
    let (size, digest) = download(answer, 5, &dir.join("a")).await.unwrap();
    assert_eq!(size, 5);
    assert_eq!(
        digest,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    let answer = client.get(url, &[], None).await.unwrap();
    assert!(matches!(
        download(answer, 4, &dir.join("b")).await,
        Err(FetchError::TooLarge { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
