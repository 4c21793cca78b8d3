//! Charts in classic repositories (`index.yaml`) and at plain URLs.
//!
//! A repository's `<repo_url>/index.yaml` is read (at most [`MAX_INDEX`]),
//! the chart's version chosen as helm does ([`super::version`]), and its
//! first URL resolved against the repository (helm's `ResolveReferenceURL`:
//! relative to `<repo_url>/`, absolute as is). That URL is then fetched
//! like a chart URL: only from an allowed host, `http://` only when
//! ALLOW_HTTP_CHARTS is on; the index's `digest`, when it has one, is
//! checked against what arrives.

use std::collections::HashMap;

use reqwest::Url;
use serde::Deserialize;

use super::error::ChartError;
use super::http::{self, FetchError, Http};
use super::version;
use crate::names::ChartVersion;

/// Largest `index.yaml` read.
pub const MAX_INDEX: u64 = 16 << 20;

/// One version of a chart in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub version: String,
    /// Where to download it (resolved, checked).
    pub url: Url,
    /// The sha256 the index gives (hex), when it gives one.
    pub sha256: Option<String>,
}

/// Reads a repository's index (the download only; parsing is
/// [`choose_entry`], run where CPU is bounded).
pub async fn fetch_index(http: &Http, repo_url: &str) -> Result<(Url, Vec<u8>), ChartError> {
    let base = Url::parse(&format!("{}/", repo_url.trim_end_matches('/')))
        .map_err(|_| ChartError::NotFound(format!("{repo_url}: not a URL")))?;
    let url = base
        .join("index.yaml")
        .map_err(|_| ChartError::NotFound(format!("{repo_url}: not a URL")))?;
    let answer = http
        .get(
            url,
            &["application/x-yaml", "application/yaml", "*/*"],
            None,
        )
        .await?;
    let body = http::read_body(answer, MAX_INDEX).await?;
    Ok((base, body))
}

/// The entry of `chart` for `version` in an index read from `base`.
pub fn choose_entry(
    index: &[u8],
    base: &Url,
    chart: &str,
    version: Option<&ChartVersion>,
    allow_http: bool,
) -> Result<IndexEntry, ChartError> {
    #[derive(Deserialize)]
    struct Index {
        #[serde(default)]
        entries: HashMap<String, Vec<Option<Entry>>>,
    }
    #[derive(Deserialize)]
    struct Entry {
        #[serde(default)]
        version: String,
        #[serde(default)]
        urls: Vec<String>,
        #[serde(default)]
        digest: Option<String>,
    }
    let index: Index = serde_yaml_ng::from_slice(index).map_err(|_| {
        ChartError::Unreachable(format!("{base}: index.yaml is not a repository index"))
    })?;
    let not_found = || {
        ChartError::NotFound(format!(
            "{base}: no {chart} {}",
            version.map(ChartVersion::as_str).unwrap_or("*")
        ))
    };
    let entries: Vec<Entry> = index
        .entries
        .into_iter()
        .find(|(name, _)| name == chart)
        .map(|(_, entries)| entries.into_iter().flatten().collect())
        .ok_or_else(not_found)?;
    let versions: Vec<String> = entries.iter().map(|e| e.version.clone()).collect();
    let chosen = version::choose_version(&versions, version.map(ChartVersion::as_str))
        .ok_or_else(not_found)?;
    let entry = entries
        .into_iter()
        .find(|e| e.version == chosen)
        .ok_or_else(not_found)?;
    let first = entry
        .urls
        .first()
        .ok_or_else(|| ChartError::NotFound(format!("{base}: {chart} {chosen} has no URL")))?;
    let url = base
        .join(first)
        .map_err(|_| ChartError::Unreachable(format!("{base}: {chart} {chosen} has a bad URL")))?;
    check_chart_url(&url, allow_http)?;
    let sha256 = entry
        .digest
        .map(|d| d.strip_prefix("sha256:").unwrap_or(&d).to_ascii_lowercase())
        .filter(|d| !d.is_empty());
    Ok(IndexEntry {
        version: chosen,
        url,
        sha256,
    })
}

/// A chart URL from an index may be `https`, or `http` when allowed.
fn check_chart_url(url: &Url, allow_http: bool) -> Result<(), ChartError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_http => Ok(()),
        _ => Err(ChartError::NotAllowed(FetchError::NotAllowed(
            http::without_query(url),
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"
apiVersion: v1
entries:
  web:
  - name: web
    version: 0.2.0
    urls: [web-0.2.0.tgz]
    digest: ABCDEF
  - name: web
    version: 0.1.0
    urls: ["https://cdn.example.com/web-0.1.0.tgz", "https://mirror.example/web.tgz"]
  - null
  other:
  - name: other
    version: 1.0.0
    urls: []
generated: "2026-11-30T00:00:00Z"
"#;

    fn base() -> Url {
        Url::parse("https://charts.example.com/stable/").unwrap()
    }

    #[test]
    fn entries_are_chosen_and_their_urls_resolved() {
        let latest = choose_entry(INDEX.as_bytes(), &base(), "web", None, false).unwrap();
        assert_eq!(latest.version, "0.2.0");
        assert_eq!(
            latest.url.as_str(),
            "https://charts.example.com/stable/web-0.2.0.tgz"
        );
        assert_eq!(latest.sha256.as_deref(), Some("abcdef"));
        let older = ChartVersion::parse("^0.1").unwrap();
        let older = choose_entry(INDEX.as_bytes(), &base(), "web", Some(&older), false).unwrap();
        assert_eq!(older.url.as_str(), "https://cdn.example.com/web-0.1.0.tgz");
        assert_eq!(older.sha256, None);
        for (chart, version) in [("web", Some("9.9.9")), ("missing", None), ("other", None)] {
            let version = version.map(|v| ChartVersion::parse(v).unwrap());
            assert!(
                matches!(
                    choose_entry(INDEX.as_bytes(), &base(), chart, version.as_ref(), false),
                    Err(ChartError::NotFound(_))
                ),
                "{chart}"
            );
        }
        assert!(matches!(
            choose_entry(b"entries: [web", &base(), "web", None, false),
            Err(ChartError::Unreachable(_))
        ));
    }

    #[test]
    fn index_urls_must_be_https_unless_http_is_allowed() {
        let index = "entries:\n  web:\n  - version: 1.0.0\n    urls: [\"http://plain.example/web.tgz\"]\n  f:\n  - version: 1.0.0\n    urls: [\"file:///etc/hostname\"]\n";
        assert!(matches!(
            choose_entry(index.as_bytes(), &base(), "web", None, false),
            Err(ChartError::NotAllowed(_))
        ));
        assert!(choose_entry(index.as_bytes(), &base(), "web", None, true).is_ok());
        assert!(matches!(
            choose_entry(index.as_bytes(), &base(), "f", None, true),
            Err(ChartError::NotAllowed(_))
        ));
    }

    #[test]
    fn alias_bombs_in_an_index_stop_early() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            bomb.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        bomb.push_str("entries: {web: [{version: 1.0.0, urls: [web.tgz], x: *a11}]}\n");
        // 10^12 nodes if expanded: the parser's repetition limit (or not
        // expanding an ignored field at all) keeps it to the text's size.
        let started = std::time::Instant::now();
        let _ = choose_entry(bomb.as_bytes(), &base(), "web", None, false);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
