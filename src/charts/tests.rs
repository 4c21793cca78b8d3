//! The store against small registry and repository doubles served in
//! process: the token flow, tag pages, blob redirects to another host
//! (allowed and not), the cache (one manifest request for a cached exact
//! version), single flight, digests, refusals and the fetch deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use super::archive::tests::tgz;
use super::archive::{ArchiveProblem, Refusal};
use super::http::tests::serve;
use super::schema::SchemaProblem;
use super::*;
use crate::names::ChartPolicy;

const TOKEN: &str = "anonymous-pull-token";

/// A chart archive whose values schema has `schema`.
fn chart(version: &str, schema: &str) -> Vec<u8> {
    let chart_yaml = format!("apiVersion: v2\nname: web\nversion: {version}\n");
    tgz(&[
        ("web/Chart.yaml", chart_yaml.as_bytes()),
        ("web/values.schema.json", schema.as_bytes()),
        ("web/templates/cm.yaml", b"kind: ConfigMap\n"),
    ])
}

fn sha256(bytes: &[u8]) -> String {
    http::hex(&Sha256::digest(bytes))
}

/// Requests each double saw, by kind.
#[derive(Default)]
struct Seen {
    tokens: AtomicUsize,
    tag_pages: AtomicUsize,
    manifests: AtomicUsize,
    blobs: AtomicUsize,
    cdn: AtomicUsize,
}

impl Seen {
    fn count(&self) -> [usize; 5] {
        [
            &self.tokens,
            &self.tag_pages,
            &self.manifests,
            &self.blobs,
            &self.cdn,
        ]
        .map(|c| c.load(Ordering::SeqCst))
    }
}

/// A registry with token auth whose blobs are redirected to a "CDN" on
/// another port; `blobs` by tag (the CDN may serve other bytes).
struct Registry {
    registry: String,
    auth: String,
    cdn: String,
    seen: Arc<Seen>,
}

#[derive(Clone)]
struct RegistryState {
    realm: String,
    cdn: String,
    /// tag → archive.
    charts: Arc<HashMap<String, Vec<u8>>>,
    /// digest → what the CDN serves for it.
    blobs: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    seen: Arc<Seen>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {TOKEN}"))
}

fn challenge(state: &RegistryState) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(
            header::WWW_AUTHENTICATE,
            format!(
                r#"Bearer realm="{}",service="registry.test",scope="repository:charts/web:pull""#,
                state.realm
            ),
        )],
    )
        .into_response()
}

async fn tags_list(
    State(state): State<RegistryState>,
    headers: HeaderMap,
    query: axum::extract::RawQuery,
) -> Response {
    if !authorized(&headers) {
        return challenge(&state);
    }
    state.seen.tag_pages.fetch_add(1, Ordering::SeqCst);
    let mut tags: Vec<String> = state.charts.keys().cloned().collect();
    tags.push("latest".into());
    tags.sort();
    // Two tags a page, linked as the distribution spec does.
    let start: usize = query
        .0
        .and_then(|q| q.strip_prefix("last=").and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let page: Vec<&String> = tags.iter().skip(start).take(2).collect();
    let mut response =
        axum::Json(serde_json::json!({"name": "charts/web", "tags": page})).into_response();
    if start + 2 < tags.len() {
        let link = format!(
            "</v2/charts/web/tags/list?last={}>; rel=\"next\"",
            start + 2
        );
        response
            .headers_mut()
            .insert(header::LINK, link.parse().expect("header"));
    }
    response
}

async fn manifest(
    State(state): State<RegistryState>,
    UrlPath(tag): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return challenge(&state);
    }
    state.seen.manifests.fetch_add(1, Ordering::SeqCst);
    let Some(archive) = state.charts.get(&tag) else {
        return (StatusCode::NOT_FOUND, "manifest unknown").into_response();
    };
    let digest = format!("sha256:{}", sha256(archive));
    state
        .blobs
        .lock()
        .expect("blobs")
        .entry(digest.clone())
        .or_insert_with(|| archive.clone());
    axum::Json(serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:00", "size": 2},
        "layers": [{"mediaType": oci::CHART_LAYER, "digest": digest, "size": archive.len()}]
    }))
    .into_response()
}

async fn blob(
    State(state): State<RegistryState>,
    UrlPath(digest): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return challenge(&state);
    }
    state.seen.blobs.fetch_add(1, Ordering::SeqCst);
    Redirect::temporary(&format!("http://{}/data/{digest}", state.cdn)).into_response()
}

impl Registry {
    async fn start(
        charts: HashMap<String, Vec<u8>>,
    ) -> (Self, Arc<Mutex<HashMap<String, Vec<u8>>>>) {
        let seen = Arc::new(Seen::default());
        let blobs: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let counted = seen.clone();
        let auth = serve(Router::new().route(
            "/token",
            get(move || {
                counted.tokens.fetch_add(1, Ordering::SeqCst);
                async { axum::Json(serde_json::json!({"token": TOKEN, "expires_in": 300})) }
            }),
        ))
        .await;
        let (counted, served) = (seen.clone(), blobs.clone());
        let cdn = serve(Router::new().route(
            "/data/{digest}",
            get(
                move |UrlPath(digest): UrlPath<String>, headers: HeaderMap| {
                    counted.cdn.fetch_add(1, Ordering::SeqCst);
                    // The token must not follow the redirect to another host.
                    assert!(headers.get(header::AUTHORIZATION).is_none());
                    let body = served.lock().expect("blobs").get(&digest).cloned();
                    async move {
                        match body {
                            Some(body) => body.into_response(),
                            None => StatusCode::NOT_FOUND.into_response(),
                        }
                    }
                },
            ),
        ))
        .await;
        let state = RegistryState {
            realm: format!("http://{auth}/token"),
            cdn: cdn.clone(),
            charts: Arc::new(charts),
            blobs: blobs.clone(),
            seen: seen.clone(),
        };
        let registry = serve(
            Router::new()
                .route("/v2/charts/web/tags/list", get(tags_list))
                .route("/v2/charts/web/manifests/{tag}", get(manifest))
                .route("/v2/charts/web/blobs/{digest}", get(blob))
                .with_state(state),
        )
        .await;
        (
            Self {
                registry,
                auth,
                cdn,
                seen,
            },
            blobs,
        )
    }

    fn reference(&self) -> ChartRef {
        ChartRef::Oci {
            url: format!("oci://{}/charts/web", self.registry),
            host: self.registry.clone(),
        }
    }

    /// A store allowed the registry (plain HTTP) and `extra` hosts.
    fn store(&self, extra: &[&str], timeout: Duration) -> (std::path::PathBuf, ChartStore) {
        let mut sources = vec![format!("oci://{}/charts", self.registry)];
        sources.extend(extra.iter().map(|h| format!("oci://{h}/charts")));
        store_for(
            ChartPolicy {
                allowed_sources: sources,
                plain_http_registries: vec![self.registry.clone()],
                ..ChartPolicy::default()
            },
            timeout,
        )
    }
}

fn store_for(policy: ChartPolicy, timeout: Duration) -> (std::path::PathBuf, ChartStore) {
    let parent = std::env::temp_dir().join(format!("charts-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&parent).expect("parent");
    let store = ChartStore::new(StoreSettings {
        policy,
        fetch_timeout: timeout,
        cache_parent: parent.clone(),
        cache_bytes: 64 << 20,
    })
    .expect("store");
    (parent, store)
}

fn version(text: &str) -> ChartVersion {
    ChartVersion::parse(text).expect("version")
}

#[tokio::test]
async fn an_oci_chart_is_fetched_with_a_token_through_a_cdn_then_served_from_the_cache() {
    let good = r##"{"properties":{"a":{"$ref":"#/definitions/a"}},"definitions":{"a":{"type":"string"}}}"##;
    let charts = HashMap::from([
        ("0.1.0".to_owned(), chart("0.1.0", good)),
        ("0.2.0".to_owned(), chart("0.2.0", good)),
        ("1.0.0-rc.1".to_owned(), chart("1.0.0-rc.1", good)),
    ]);
    let expected = charts["0.2.0"].clone();
    let (double, _) = Registry::start(charts).await;
    let (parent, store) = double.store(&[&double.auth, &double.cdn], Duration::from_secs(30));

    // No version: every tag page read, the highest release chosen.
    let local = store
        .fetch(&double.reference(), None)
        .await
        .expect("fetched");
    assert_eq!(std::fs::read(local.path()).expect("archive"), expected);
    assert_eq!(local.sha256(), sha256(&expected));
    assert!(local.path().starts_with(store.cache().dir()));
    // tokens, tag pages, manifests, blob redirects, CDN downloads
    assert_eq!(double.seen.count(), [1, 2, 1, 1, 1]);

    // The same version again, exactly: one manifest request, nothing else.
    let again = store
        .fetch(&double.reference(), Some(&version("0.2.0")))
        .await
        .expect("cached");
    assert_eq!(again.path(), local.path());
    assert_eq!(double.seen.count(), [1, 2, 2, 1, 1]);

    // A range: the tags again, then the older chart downloaded.
    let older = store
        .fetch(&double.reference(), Some(&version("~0.1")))
        .await
        .expect("older");
    assert_ne!(older.sha256(), local.sha256());
    assert_eq!(double.seen.count(), [1, 4, 3, 2, 2]);

    // No such version or tag: not found.
    for missing in ["9.9.9", "^3"] {
        assert!(matches!(
            store
                .fetch(&double.reference(), Some(&version(missing)))
                .await,
            Err(ChartError::NotFound(_))
        ));
    }
    drop((local, again, older, store));
    std::fs::remove_dir_all(parent).expect("cleanup");
}

#[tokio::test]
async fn redirects_and_token_services_outside_the_allowed_hosts_are_refused() {
    let charts = HashMap::from([("0.1.0".to_owned(), chart("0.1.0", "{}"))]);
    let (double, _) = Registry::start(charts).await;
    // The CDN is not allowed: the blob is refused, the CDN never asked.
    let (parent, store) = double.store(&[&double.auth], Duration::from_secs(30));
    let outcome = store
        .fetch(&double.reference(), Some(&version("0.1.0")))
        .await;
    assert!(
        matches!(outcome, Err(ChartError::NotAllowed(_))),
        "{outcome:?}"
    );
    assert_eq!(double.seen.cdn.load(Ordering::SeqCst), 0);
    drop(store);
    // The token service is not allowed: refused before asking it.
    let tokens = double.seen.tokens.load(Ordering::SeqCst);
    let (parent2, store) = double.store(&[&double.cdn], Duration::from_secs(30));
    let outcome = store
        .fetch(&double.reference(), Some(&version("0.1.0")))
        .await;
    assert!(
        matches!(outcome, Err(ChartError::NotAllowed(_))),
        "{outcome:?}"
    );
    assert_eq!(double.seen.tokens.load(Ordering::SeqCst), tokens);
    drop(store);
    for dir in [parent, parent2] {
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}

#[tokio::test]
async fn refused_schemas_are_refused_again_without_a_download() {
    let charts = HashMap::from([
        (
            "1.0.0".to_owned(),
            chart("1.0.0", r#"{"$ref":"http://127.0.0.1:9/x.json"}"#),
        ),
        (
            "2.0.0".to_owned(),
            chart("2.0.0", r#"{"$schema":"file:///etc/hostname"}"#),
        ),
    ]);
    let (double, _) = Registry::start(charts).await;
    let (parent, store) = double.store(&[&double.auth, &double.cdn], Duration::from_secs(30));
    for _ in 0..2 {
        let outcome = store
            .fetch(&double.reference(), Some(&version("1.0.0")))
            .await;
        assert!(
            matches!(
                outcome,
                Err(ChartError::Refused(Refusal::Schema {
                    problem: SchemaProblem::RemoteReference,
                    subchart: false
                }))
            ),
            "{outcome:?}"
        );
    }
    assert_eq!(
        double.seen.cdn.load(Ordering::SeqCst),
        1,
        "the verdict is cached"
    );
    let outcome = store
        .fetch(&double.reference(), Some(&version("2.0.0")))
        .await;
    assert!(matches!(
        outcome,
        Err(ChartError::Refused(Refusal::Schema {
            problem: SchemaProblem::UnknownMetaSchema,
            ..
        }))
    ));
    // Nothing refused is kept on disk.
    assert_eq!(store.cache().bytes(), 0);
    drop(store);
    std::fs::remove_dir_all(parent).expect("cleanup");
}

#[tokio::test]
async fn concurrent_fetches_of_one_chart_download_it_once() {
    let charts = HashMap::from([("0.1.0".to_owned(), chart("0.1.0", "{}"))]);
    let (double, _) = Registry::start(charts).await;
    let (parent, store) = double.store(&[&double.auth, &double.cdn], Duration::from_secs(30));
    let store = Arc::new(store);
    let fetches: Vec<_> = (0..8)
        .map(|_| {
            let (store, reference) = (store.clone(), double.reference());
            tokio::spawn(async move { store.fetch(&reference, Some(&version("0.1.0"))).await })
        })
        .collect();
    for fetch in fetches {
        fetch.await.expect("task").expect("fetched");
    }
    assert_eq!(double.seen.cdn.load(Ordering::SeqCst), 1);
    assert_eq!(double.seen.manifests.load(Ordering::SeqCst), 8);
    drop(store);
    std::fs::remove_dir_all(parent).expect("cleanup");
}

#[tokio::test]
async fn a_blob_that_does_not_match_its_digest_is_not_used() {
    let charts = HashMap::from([("0.1.0".to_owned(), chart("0.1.0", "{}"))]);
    let archive = charts["0.1.0"].clone();
    let (double, blobs) = Registry::start(charts).await;
    // The CDN serves other bytes of the same size for the digest.
    let mut tampered = archive.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    blobs
        .lock()
        .expect("blobs")
        .insert(format!("sha256:{}", sha256(&archive)), tampered);
    let (parent, store) = double.store(&[&double.auth, &double.cdn], Duration::from_secs(30));
    let outcome = store
        .fetch(&double.reference(), Some(&version("0.1.0")))
        .await;
    assert!(
        matches!(outcome, Err(ChartError::Unreachable(_))),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_dir(store.cache().dir()).expect("dir").count(),
        0
    );
    drop(store);
    std::fs::remove_dir_all(parent).expect("cleanup");
}

#[tokio::test]
async fn classic_repositories_and_chart_urls() {
    let archive = chart("0.2.0", "{}");
    let digest = sha256(&archive);
    let served = Arc::new(AtomicUsize::new(0));
    let (count, payload) = (served.clone(), archive.clone());
    let big = vec![b'x'; (MAX_ARCHIVE + 1) as usize];
    let index = format!(
        "apiVersion: v1\nentries:\n  web:\n  - version: 0.2.0\n    urls: [files/web-0.2.0.tgz]\n    digest: {digest}\n  - version: 0.1.0\n    urls: [files/web-0.2.0.tgz]\n    digest: {}\n  away:\n  - version: 1.0.0\n    urls: [\"http://127.0.0.1:9/away.tgz\"]\n",
        "0".repeat(64)
    );
    let origin = serve(
        Router::new()
            .route("/repo/index.yaml", get(move || async move { index }))
            .route(
                "/repo/files/web-0.2.0.tgz",
                get(move || {
                    count.fetch_add(1, Ordering::SeqCst);
                    let payload = payload.clone();
                    async move { payload }
                }),
            )
            .route("/big.tgz", get(move || async move { big })),
    )
    .await;
    let (parent, store) = store_for(
        ChartPolicy {
            allowed_sources: vec![format!("http://{origin}")],
            allow_http: true,
            ..ChartPolicy::default()
        },
        Duration::from_secs(30),
    );
    let repo = ChartRef::Repo {
        name: "web".into(),
        repo_url: format!("http://{origin}/repo"),
    };
    let local = store.fetch(&repo, None).await.expect("latest");
    assert_eq!(local.sha256(), digest);
    // Known by its digest: the index is read, the chart not downloaded again.
    let again = store
        .fetch(&repo, Some(&version("0.2.0")))
        .await
        .expect("cached");
    assert_eq!(again.path(), local.path());
    assert_eq!(served.load(Ordering::SeqCst), 1);
    // The index's digest does not match what arrives.
    assert!(matches!(
        store.fetch(&repo, Some(&version("0.1.0"))).await,
        Err(ChartError::Unreachable(_))
    ));
    // An index URL on a host that is not allowed.
    let away = ChartRef::Repo {
        name: "away".into(),
        repo_url: format!("http://{origin}/repo"),
    };
    assert!(matches!(
        store.fetch(&away, None).await,
        Err(ChartError::NotAllowed(_))
    ));
    // A chart URL: downloaded, known by content.
    let url = ChartRef::Url(format!("http://{origin}/repo/files/web-0.2.0.tgz"));
    let by_url = store.fetch(&url, None).await.expect("by URL");
    assert_eq!(by_url.path(), local.path());
    let big = ChartRef::Url(format!("http://{origin}/big.tgz"));
    assert!(matches!(
        store.fetch(&big, None).await,
        Err(ChartError::TooLarge(MAX_ARCHIVE))
    ));
    drop((local, again, by_url, store));
    std::fs::remove_dir_all(parent).expect("cleanup");
}

#[tokio::test]
async fn unreadable_archives_are_refused_and_slow_sources_time_out() {
    let origin = serve(
        Router::new()
            .route("/junk.tgz", get(|| async { "not an archive" }))
            .route(
                "/slow.tgz",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            ),
    )
    .await;
    let (parent, store) = store_for(
        ChartPolicy {
            allowed_sources: vec![format!("http://{origin}")],
            allow_http: true,
            ..ChartPolicy::default()
        },
        Duration::from_millis(500),
    );
    let junk = ChartRef::Url(format!("http://{origin}/junk.tgz"));
    assert!(matches!(
        store.fetch(&junk, None).await,
        Err(ChartError::Refused(Refusal::Archive(
            ArchiveProblem::Unreadable
        )))
    ));
    let slow = ChartRef::Url(format!("http://{origin}/slow.tgz"));
    let started = std::time::Instant::now();
    assert!(matches!(
        store.fetch(&slow, None).await,
        Err(ChartError::TimedOut(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    // A closed port: unreachable, at once.
    let closed = ChartRef::Url("http://127.0.0.1:9/x.tgz".into());
    let (parent2, any) = store_for(
        ChartPolicy {
            allowed_sources: vec!["*".into()],
            allow_http: true,
            ..ChartPolicy::default()
        },
        Duration::from_secs(5),
    );
    assert!(matches!(
        any.fetch(&closed, None).await,
        Err(ChartError::Unreachable(_))
    ));
    drop((store, any));
    for dir in [parent, parent2] {
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
