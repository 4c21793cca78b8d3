//! Charts reach helm only as local archives the operator fetched and
//! inspected itself; helm is never given a chart URL.
//!
//! ```text
//!  ChartRef ─► oci.rs  (tags, manifest, blob)   ┐  every request: allowed hosts only,
//!           ─► repo.rs (index.yaml, chart URL)  ├─ redirects and token services checked,
//!           ─► a chart URL                      ┘  timeouts, capped bodies (http.rs)
//!                      │ sha256
//!                      ▼
//!           cache.rs (content-addressed, bounded, single flight)
//!                      │ new archive: inspected once, in a bounded pool
//!                      ▼
//!           archive.rs + schema.rs: caps, and no values schema that reaches out
//!                      │
//!                      ▼
//!           LocalChart: a path under the cache, held while helm reads it
//! ```
//!
//! Why: helm validates values against every `values.schema.json` of a
//! chart, and its schema library fetches what they name: over the network
//! (loopback included, which no proxy sees) and from the operator's disk.
//! A chart that could make it do so is refused here, before helm runs
//! ([`schema`]); helm still validates the values itself.
//!
//! Bounds of one fetch: CHART_FETCH_TIMEOUT for all of it; per request
//! [`http::CONNECT_TIMEOUT`] to connect and [`http::READ_TIMEOUT`] between
//! reads; bodies at most [`oci::MAX_TAG_PAGE`] per page of tags
//! ([`oci::MAX_TAG_PAGES`] pages), [`oci::MAX_MANIFEST`],
//! [`http::MAX_TOKEN_BODY`], [`repo::MAX_INDEX`] and [`MAX_ARCHIVE`] for
//! the chart; the archive's own bounds are in [`archive`]. At most
//! [`PARSERS`] inspections and index parses run at once.

pub mod archive;
pub mod cache;
pub mod error;
pub mod http;
pub mod oci;
pub mod repo;
pub mod schema;
pub mod version;

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::sync::Semaphore;

use crate::names::{ChartPolicy, ChartRef, ChartVersion};
use cache::{ChartCache, Held, Known, Partial};
pub use error::ChartError;
use http::{FetchError, Http};

/// Largest chart archive downloaded (compressed; helm reads at most
/// 100 MiB once decompressed).
pub const MAX_ARCHIVE: u64 = 32 << 20;
/// Most inspections and index parses at once (CPU-bound work).
pub const PARSERS: usize = 2;

/// How the store is set up.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// Hosts, http policy and plain-HTTP registries.
    pub policy: ChartPolicy,
    /// The whole fetch of one chart.
    pub fetch_timeout: Duration,
    /// Where the cache directory goes (the system temp dir in production).
    pub cache_parent: std::path::PathBuf,
    /// Most bytes of archives kept.
    pub cache_bytes: u64,
}

/// Fetches, inspects and keeps charts; cheap to share behind an `Arc`.
pub struct ChartStore {
    http: Http,
    cache: ChartCache,
    policy: ChartPolicy,
    fetch_timeout: Duration,
    parsers: Semaphore,
}

/// A chart ready for helm: a local archive, kept while this lives.
pub struct LocalChart {
    held: Held,
}

impl LocalChart {
    /// The archive to give helm.
    pub fn path(&self) -> &Path {
        self.held.path()
    }

    /// Its sha256, hex.
    pub fn sha256(&self) -> &str {
        self.held.sha256()
    }
}

impl std::fmt::Debug for LocalChart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalChart")
            .field("sha256", &self.sha256())
            .finish()
    }
}

/// Where an archive comes from once its location is known.
enum Download<'a> {
    /// An OCI blob (digest and size from its manifest).
    Blob(&'a oci::Repository, &'a oci::Layer),
    /// A chart URL (perhaps with the digest an index gave).
    Url(&'a Url),
}

impl ChartStore {
    pub fn new(settings: StoreSettings) -> std::io::Result<Self> {
        let http = Http::new(settings.policy.fetch_hosts()).map_err(std::io::Error::other)?;
        let cache = ChartCache::open(&settings.cache_parent, settings.cache_bytes)?;
        Ok(Self {
            http,
            cache,
            policy: settings.policy,
            fetch_timeout: settings.fetch_timeout,
            parsers: Semaphore::new(PARSERS),
        })
    }

    /// The cache (for tests and logs).
    pub fn cache(&self) -> &ChartCache {
        &self.cache
    }

    /// The archive of `chart` at `version` (the latest without one),
    /// inspected: from the cache when its digest is known there, else
    /// downloaded. Bounded by CHART_FETCH_TIMEOUT as a whole.
    pub async fn fetch(
        &self,
        chart: &ChartRef,
        version: Option<&ChartVersion>,
    ) -> Result<LocalChart, ChartError> {
        let started = Instant::now();
        let outcome = tokio::time::timeout(self.fetch_timeout, self.fetch_now(chart, version))
            .await
            .unwrap_or(Err(ChartError::TimedOut(self.fetch_timeout.as_secs())));
        let label = match &outcome {
            Ok(_) => "ok",
            Err(ChartError::Refused(_) | ChartError::TooLarge(_)) => "refused",
            Err(ChartError::NotFound(_)) => "not_found",
            Err(ChartError::NotAllowed(_)) => "not_allowed",
            Err(_) => "failed",
        };
        crate::metrics::chart_fetch(label, started.elapsed());
        match &outcome {
            Ok(local) => tracing::info!(
                source = chart.source(),
                sha256 = local.sha256(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "chart ready for helm"
            ),
            Err(error) => tracing::warn!(source = chart.source(), %error, "chart fetch failed"),
        }
        outcome
    }

    async fn fetch_now(
        &self,
        chart: &ChartRef,
        version: Option<&ChartVersion>,
    ) -> Result<LocalChart, ChartError> {
        let known = match chart {
            ChartRef::Oci { url, .. } => {
                let plain = chart.plain_http(&self.policy);
                let repository = oci::Repository::parse(url, plain)
                    .ok_or_else(|| ChartError::NotFound(format!("{url}: not a repository")))?;
                let layer = repository.resolve(&self.http, version).await?;
                if layer.size > MAX_ARCHIVE {
                    return Err(ChartError::TooLarge(MAX_ARCHIVE));
                }
                self.by_digest(&layer.sha256, Download::Blob(&repository, &layer))
                    .await?
            }
            ChartRef::Repo { name, repo_url } => {
                let (base, index) = repo::fetch_index(&self.http, repo_url).await?;
                let entry = {
                    let _permit = self.parsers.acquire().await;
                    let (name, version) = (name.clone(), version.cloned());
                    let allow_http = self.policy.allow_http;
                    tokio::task::spawn_blocking(move || {
                        repo::choose_entry(&index, &base, &name, version.as_ref(), allow_http)
                    })
                    .await
                    .map_err(|e| ChartError::Cache(std::io::Error::other(e)))??
                };
                match &entry.sha256 {
                    Some(sha256) => self.by_digest(sha256, Download::Url(&entry.url)).await?,
                    None => self.by_url(&entry.url).await?,
                }
            }
            ChartRef::Url(url) => {
                let url = Url::parse(url)
                    .map_err(|_| ChartError::NotFound(format!("{url}: not a URL")))?;
                self.by_url(&url).await?
            }
        };
        known
            .map(|held| LocalChart { held })
            .map_err(ChartError::Refused)
    }

    /// An archive whose sha256 is known before downloading it.
    async fn by_digest(&self, sha256: &str, download: Download<'_>) -> Result<Known, ChartError> {
        if let Some(known) = self.cache.lookup(sha256) {
            return Ok(known);
        }
        let _flight = self.cache.flight(sha256).await;
        if let Some(known) = self.cache.lookup(sha256) {
            return Ok(known);
        }
        let partial = self.cache.partial();
        let size = match download {
            Download::Blob(repository, layer) => {
                repository
                    .download(&self.http, layer, partial.path())
                    .await?;
                layer.size
            }
            Download::Url(url) => {
                let (size, actual) = self.download_url(url, &partial).await?;
                if actual != sha256 {
                    return Err(ChartError::Unreachable(format!(
                        "{}: the chart does not match the digest its index gives",
                        http::without_query(url)
                    )));
                }
                size
            }
        };
        self.inspect_and_keep(sha256, partial, size).await
    }

    /// An archive known only by its URL: downloaded each time, inspected
    /// only when its content is new.
    async fn by_url(&self, url: &Url) -> Result<Known, ChartError> {
        let _flight = self.cache.flight(url.as_str()).await;
        let partial = self.cache.partial();
        let (size, sha256) = self.download_url(url, &partial).await?;
        if let Some(known) = self.cache.lookup(&sha256) {
            return Ok(known);
        }
        self.inspect_and_keep(&sha256, partial, size).await
    }

    async fn download_url(
        &self,
        url: &Url,
        partial: &Partial,
    ) -> Result<(u64, String), ChartError> {
        let answer = self.http.get(url.clone(), &[], None).await?;
        http::download(answer, MAX_ARCHIVE, partial.path())
            .await
            .map_err(|error| match error {
                FetchError::TooLarge { .. } => ChartError::TooLarge(MAX_ARCHIVE),
                other => other.into(),
            })
    }

    /// Inspects a new archive (in the bounded pool) and stores it with its
    /// verdict.
    async fn inspect_and_keep(
        &self,
        sha256: &str,
        partial: Partial,
        size: u64,
    ) -> Result<Known, ChartError> {
        let verdict = {
            let _permit = self.parsers.acquire().await;
            let path = partial.path().to_owned();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(path)?;
                Ok::<_, std::io::Error>(archive::inspect(std::io::BufReader::new(file)))
            })
            .await
            .map_err(std::io::Error::other)??
        };
        match &verdict {
            Ok(found) => tracing::info!(
                sha256,
                size,
                files = found.files,
                schemas = found.schemas,
                subchart_archives = found.subchart_archives,
                "chart archive inspected"
            ),
            Err(refusal) => tracing::warn!(sha256, %refusal, "chart archive refused"),
        }
        Ok(self.cache.insert(sha256, partial, size, verdict.err())?)
    }
}

#[cfg(test)]
mod tests;
