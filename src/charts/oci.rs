//! Charts in OCI registries (the distribution API, as helm uses it):
//!
//! ```text
//!  no exact version: GET /v2/<repo>/tags/list   (pages followed by `Link: <…>; rel="next"`)
//!                    └─ the tag chosen as helm does (super::version)
//!  GET /v2/<repo>/manifests/<tag>               (Accept: OCI image manifest)
//!  └─ the layer `application/vnd.cncf.helm.chart.content.v1.tar+gzip`: digest, size
//!  GET /v2/<repo>/blobs/<digest>                (only when the cache lacks it; often
//!                                                redirected to a CDN; sha256 and size checked)
//! ```
//!
//! Each request may first get `401` and a Bearer challenge (Docker Hub's
//! token service is `auth.docker.io`, Harbor's `/service/token` on its own
//! host): [`super::http`] answers it. `PLAIN_HTTP_REGISTRIES` are spoken
//! to over `http`, every other registry over `https`.

use std::path::Path;

use reqwest::Url;
use serde::Deserialize;

use super::error::ChartError;
use super::http::{self, FetchError, Http, Registry};
use super::version::{self, OciTarget};
use crate::names::ChartVersion;

/// The media type of a chart's content layer.
pub const CHART_LAYER: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
/// The layer type of charts pushed before Helm 3.8 (helm still reads it).
pub const LEGACY_CHART_LAYER: &str = "application/tar+gzip";
/// What is asked for as the manifest.
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// Largest manifest read (containerd's limit too).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest page of a tag list read.
pub const MAX_TAG_PAGE: u64 = 4 << 20;
/// Most pages of a tag list followed.
pub const MAX_TAG_PAGES: usize = 20;

/// A repository in a registry.
#[derive(Debug, Clone)]
pub struct Repository {
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    /// The path after the host (`charts/web`).
    name: String,
}

/// The chart layer a manifest names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The hex part of the digest.
    pub sha256: String,
    pub size: u64,
    /// The tag it was found under (for the log).
    pub tag: String,
}

impl Repository {
    /// `oci://host[:port]/path` (already validated), over http when
    /// `plain_http`.
    pub fn parse(url: &str, plain_http: bool) -> Option<Self> {
        let rest = url.strip_prefix("oci://")?;
        let (host, name) = rest.split_once('/')?;
        let scheme = if plain_http { "http" } else { "https" };
        Some(Self {
            base: format!("{scheme}://{host}"),
            name: name.trim_end_matches('/').to_owned(),
        })
    }

    fn url(&self, path: &str) -> Result<Url, ChartError> {
        Url::parse(&format!("{}/v2/{}/{path}", self.base, self.name))
            .map_err(|_| ChartError::NotFound(format!("{}/{}: not a URL", self.base, self.name)))
    }

    fn registry(&self) -> Registry<'_> {
        Registry {
            repository: &self.name,
        }
    }

    /// The chart layer for `version` (latest without one).
    pub async fn resolve(
        &self,
        http: &Http,
        version: Option<&ChartVersion>,
    ) -> Result<Layer, ChartError> {
        let tag = match version::oci_target(version) {
            OciTarget::Tag(tag) => tag,
            OciTarget::Choose(wanted) => {
                let tags = self.tags(http).await?;
                version::choose_tag(&tags, wanted.as_deref()).ok_or_else(|| {
                    ChartError::NotFound(format!(
                        "{}/{}: no tag matches {}",
                        self.base,
                        self.name,
                        wanted.as_deref().unwrap_or("*")
                    ))
                })?
            }
        };
        let url = self.url(&format!("manifests/{tag}"))?;
        let answer = http
            .get(url.clone(), &[MANIFEST_TYPE], Some(self.registry()))
            .await?;
        let body = http::read_body(answer, MAX_MANIFEST).await?;
        chart_layer(&body, tag).map_err(|why| match why {
            LayerProblem::NotAChart => {
                ChartError::NotFound(format!("{}: not a Helm chart", http::without_query(&url)))
            }
            LayerProblem::Unreadable(why) => {
                ChartError::Unreachable(format!("{}: {why}", http::without_query(&url)))
            }
        })
    }

    /// Every tag of the repository, all pages.
    async fn tags(&self, http: &Http) -> Result<Vec<String>, ChartError> {
        #[derive(Deserialize)]
        struct Page {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = self.url("tags/list")?;
        let mut tags = Vec::new();
        for _ in 0..MAX_TAG_PAGES {
            let answer = http.get(url.clone(), &[], Some(self.registry())).await?;
            let next = next_page(&answer, &url);
            let body = http::read_body(answer, MAX_TAG_PAGE).await?;
            let page: Page = serde_json::from_slice(&body).map_err(|_| FetchError::Invalid {
                url: http::without_query(&url),
                why: "a tag list that is not JSON",
            })?;
            tags.extend(page.tags.unwrap_or_default());
            match next {
                Some(next) => url = next,
                None => return Ok(tags),
            }
        }
        Err(ChartError::Unreachable(format!(
            "{}/{}: more than {MAX_TAG_PAGES} pages of tags",
            self.base, self.name
        )))
    }

    /// Downloads `layer` into the new file `to`; its size and sha256 are
    /// checked.
    pub async fn download(&self, http: &Http, layer: &Layer, to: &Path) -> Result<(), ChartError> {
        let url = self.url(&format!("blobs/{}", layer.digest))?;
        let answer = http.get(url.clone(), &[], Some(self.registry())).await?;
        let (size, sha256) = http::download(answer, layer.size, to)
            .await
            .map_err(|error| match error {
                FetchError::TooLarge { .. } => ChartError::Unreachable(format!(
                    "{}: more bytes than its manifest says",
                    http::without_query(&url)
                )),
                other => other.into(),
            })?;
        if size != layer.size || sha256 != layer.sha256 {
            return Err(ChartError::Unreachable(format!(
                "{}: the blob does not match its digest",
                http::without_query(&url)
            )));
        }
        Ok(())
    }
}

/// The `rel="next"` link of a tag list page, resolved against its URL.
fn next_page(answer: &reqwest::Response, url: &Url) -> Option<Url> {
    let link = answer.headers().get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
            .then(|| url.join(target).ok())
            .flatten()
    })
}

/// Why a manifest yields no chart layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerProblem {
    /// A manifest without a chart layer (an image, an index).
    NotAChart,
    /// Not a manifest, or a chart layer with a digest not sha256.
    Unreadable(&'static str),
}

/// The chart layer of a manifest.
pub fn chart_layer(manifest: &[u8], tag: String) -> Result<Layer, LayerProblem> {
    #[derive(Deserialize)]
    struct Manifest {
        #[serde(default)]
        layers: Vec<Descriptor>,
    }
    #[derive(Deserialize)]
    struct Descriptor {
        #[serde(rename = "mediaType")]
        media_type: String,
        digest: String,
        size: u64,
    }
    let manifest: Manifest = serde_json::from_slice(manifest)
        .map_err(|_| LayerProblem::Unreadable("a manifest that is not JSON"))?;
    let layer = manifest
        .layers
        .into_iter()
        .find(|l| l.media_type == CHART_LAYER || l.media_type == LEGACY_CHART_LAYER)
        .ok_or(LayerProblem::NotAChart)?;
    let sha256 = layer
        .digest
        .strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(LayerProblem::Unreadable(
            "a chart layer whose digest is not sha256",
        ))?
        .to_ascii_lowercase();
    Ok(Layer {
        digest: format!("sha256:{sha256}"),
        sha256,
        size: layer.size,
        tag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0bc5b8d3fe3c8e7c6f1f1a1e9e1c3c1b1a1f1e1d1c1b1a191817161514131211";

    #[test]
    fn the_chart_layer_is_found_in_a_manifest() {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "application/vnd.cncf.helm.config.v1+json", "digest": "sha256:aa", "size": 1},
            "layers": [
                {"mediaType": "application/vnd.cncf.helm.chart.provenance.v1.prov", "digest": "sha256:bb", "size": 2},
                {"mediaType": CHART_LAYER, "digest": DIGEST, "size": 1234}
            ]
        });
        let layer = chart_layer(manifest.to_string().as_bytes(), "0.1.0".into()).unwrap();
        assert_eq!(layer.digest, DIGEST);
        assert_eq!(layer.sha256.len(), 64);
        assert_eq!(layer.size, 1234);
        let image = serde_json::json!({"layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST, "size": 1}]});
        assert_eq!(
            chart_layer(image.to_string().as_bytes(), String::new()),
            Err(LayerProblem::NotAChart)
        );
        let index = serde_json::json!({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []});
        assert_eq!(
            chart_layer(index.to_string().as_bytes(), String::new()),
            Err(LayerProblem::NotAChart)
        );
        let sha512 = serde_json::json!({"layers": [{"mediaType": CHART_LAYER, "digest": "sha512:abcd", "size": 1}]});
        assert!(matches!(
            chart_layer(sha512.to_string().as_bytes(), String::new()),
            Err(LayerProblem::Unreadable(_))
        ));
        assert!(matches!(
            chart_layer(b"<html>", String::new()),
            Err(LayerProblem::Unreadable(_))
        ));
    }

    #[test]
    fn references_become_registry_urls() {
        let plain = Repository::parse("oci://127.0.0.1:5000/charts/web", true).unwrap();
        assert_eq!(
            plain.url("tags/list").unwrap().as_str(),
            "http://127.0.0.1:5000/v2/charts/web/tags/list"
        );
        let hub =
            Repository::parse("oci://registry-1.docker.io/bitnamicharts/redis", false).unwrap();
        assert_eq!(
            hub.url("manifests/1.0.0").unwrap().as_str(),
            "https://registry-1.docker.io/v2/bitnamicharts/redis/manifests/1.0.0"
        );
    }
}
