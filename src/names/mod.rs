//! Validated input types: a handler can only ever hold values that passed
//! these checks, so nothing a caller sends reaches helm's argv or the
//! Kubernetes API unchecked.
//!
//! Each constructor returns a [`ValidationError`] naming the field and the
//! rule, which the API layer turns into a 400 (or 403 for a namespace outside
//! the tenant prefix on a release path).

use std::fmt;

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// The namespace is not a DNS-1123 label.
    #[error(
        "namespace {0:?} is not a valid DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
    )]
    NamespaceSyntax(String),
    /// The namespace is valid but outside the tenant prefix.
    #[error("namespace {name:?} is outside the managed prefix {prefix:?}")]
    NamespaceOutsidePrefix { name: String, prefix: String },
    /// The release name breaks Helm's naming rule.
    #[error(
        "release name {0:?} is invalid: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, at most 53 characters"
    )]
    ReleaseName(String),
    /// The chart reference is not an accepted form.
    #[error("chart {0:?} is invalid: {1}")]
    Chart(String, &'static str),
    /// The chart source is not in ALLOWED_CHART_SOURCES.
    #[error("chart source {0:?} is not allowed by this operator")]
    ChartSourceNotAllowed(String),
    /// The repository URL is not an accepted form.
    #[error("repo_url {0:?} is invalid: {1}")]
    RepoUrl(String, &'static str),
    /// The version is neither a semver nor a semver range.
    #[error("version {0:?} is not a semantic version or version range")]
    Version(String),
    /// A quota field is not a Kubernetes quantity.
    #[error("{field} {value:?} is not a valid Kubernetes quantity (e.g. \"2\", \"500m\", \"4Gi\")")]
    Quantity { field: &'static str, value: String },
    /// A quota's object count is out of range.
    #[error("{field} {value} is not a whole number from 1 to {MAX_OBJECT_COUNT}")]
    ObjectCount { field: &'static str, value: i64 },
}

/// Largest object count a tenant quota may set (`pods_limit`, …).
pub const MAX_OBJECT_COUNT: i64 = 10_000;

/// A quota's count of objects of one kind: 1 to [`MAX_OBJECT_COUNT`].
pub fn object_count(field: &'static str, value: i64) -> Result<u32, ValidationError> {
    u32::try_from(value)
        .ok()
        .filter(|count| (1..=MAX_OBJECT_COUNT).contains(&i64::from(*count)))
        .ok_or(ValidationError::ObjectCount { field, value })
}

/// True for a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 chars.
pub fn is_dns1123_label(value: &str) -> bool {
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > 63 {
        return false;
    }
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    alnum(&bytes[0])
        && alnum(&bytes[bytes.len() - 1])
        && bytes.iter().all(|b| alnum(b) || *b == b'-')
}

/// A namespace that belongs to a tenant: a DNS-1123 label starting with the
/// configured prefix (`paas-ws-` by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantNamespace(String);

impl TenantNamespace {
    pub fn parse(value: &str, prefix: &str) -> Result<Self, ValidationError> {
        if !is_dns1123_label(value) {
            return Err(ValidationError::NamespaceSyntax(truncate(value)));
        }
        if !value.starts_with(prefix) || value.len() == prefix.len() {
            return Err(ValidationError::NamespaceOutsidePrefix {
                name: value.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A Helm release name (Helm's own rule, at most 53 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseName(String);

impl ReleaseName {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let ok = value.len() <= 53 && !value.is_empty() && value.split('.').all(is_dns1123_label);
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::ReleaseName(truncate(value)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a chart comes from (`crate::charts` fetches it; helm only gets
/// the local archive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartRef {
    /// `oci://host[:port]/path/name`.
    Oci { url: String, host: String },
    /// A packaged chart at an `https://` (or allowed `http://`) URL.
    Url(String),
    /// A chart name in a classic repository (its `index.yaml`).
    Repo { name: String, repo_url: String },
}

/// What the operator accepts as a chart source (from the configuration).
#[derive(Debug, Clone, Default)]
pub struct ChartPolicy {
    /// Accepted sources: a chart is accepted when its scheme and host:port
    /// are an entry's and the entry's path segments begin its path
    /// (`oci://host/charts` admits `oci://host/charts/web`, not
    /// `oci://host/chartsx/web`). `*` admits any source; no entry, none.
    pub allowed_sources: Vec<String>,
    /// `host:port` of OCI registries spoken to over plain HTTP.
    pub plain_http_registries: Vec<String>,
    /// Whether `http://` chart and repository URLs are accepted.
    pub allow_http: bool,
    /// Further `host[:port]` chart downloads may go to (CHART_FETCH_HOSTS):
    /// where allowed sources redirect, or their token service.
    pub fetch_hosts: Vec<String>,
}

impl ChartPolicy {
    /// True when `source` (a chart or repository URL) is within an entry of
    /// the allow-list, segment by segment.
    pub fn admits(&self, source: &str) -> bool {
        let Some(source) = UrlParts::parse(source) else {
            return false;
        };
        self.allowed_sources.iter().any(|entry| {
            entry == "*" || UrlParts::parse(entry).is_some_and(|entry| entry.contains(&source))
        })
    }

    /// `host[:port]` of every allowed source (`None`: any host, `*`): where
    /// charts may be fetched from.
    pub fn allowed_hosts(&self) -> Option<Vec<String>> {
        if self.allowed_sources.iter().any(|entry| entry == "*") {
            return None;
        }
        let mut hosts: Vec<String> = self
            .allowed_sources
            .iter()
            .filter_map(|entry| UrlParts::parse(entry).map(|parts| parts.authority))
            .collect();
        hosts.sort();
        hosts.dedup();
        Some(hosts)
    }

    /// Every host a chart download may reach: the allowed sources' hosts
    /// and `fetch_hosts`, or any host with `*`.
    pub fn fetch_hosts(&self) -> AllowedHosts {
        match self.allowed_hosts() {
            None => AllowedHosts::Any,
            Some(mut hosts) => {
                hosts.extend(self.fetch_hosts.iter().cloned());
                AllowedHosts::new(hosts)
            }
        }
    }
}

/// Which `host:port` an outbound request may reach: the listed entries (an
/// entry without a port admits the default ports, 443 and 80), or any host
/// (`ALLOWED_CHART_SOURCES=*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHosts {
    /// Any host at all (`*`).
    Any,
    /// Only these `host[:port]`, lower-cased.
    Only(Vec<String>),
}

impl AllowedHosts {
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Self {
        Self::Only(hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect())
    }

    /// No host at all.
    pub fn none() -> Self {
        Self::Only(Vec::new())
    }

    /// True when `target` (`host:port`) is allowed.
    pub fn admits(&self, target: &str) -> bool {
        let entries = match self {
            Self::Any => return true,
            Self::Only(entries) => entries,
        };
        let target = target.to_ascii_lowercase();
        let Some((host, port)) = target.rsplit_once(':') else {
            return false;
        };
        entries.iter().any(|entry| match entry.rsplit_once(':') {
            Some(_) => *entry == target,
            None => entry == host && matches!(port, "443" | "80"),
        })
    }
}

const MAX_URL_LEN: usize = 512;

/// A source URL cut where the allow-list compares it.
#[derive(Debug, PartialEq, Eq)]
struct UrlParts {
    scheme: String,
    /// `host[:port]`, the host lower-cased.
    authority: String,
    segments: Vec<String>,
}

impl UrlParts {
    fn parse(url: &str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.is_empty() || authority.contains('@') {
            return None;
        }
        Some(Self {
            scheme: scheme.to_ascii_lowercase(),
            authority: authority.to_ascii_lowercase(),
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// Same scheme and host:port, and `self`'s path segments begin `other`'s.
    fn contains(&self, other: &Self) -> bool {
        self.scheme == other.scheme
            && self.authority == other.authority
            && other.segments.starts_with(&self.segments)
    }
}

impl ChartRef {
    /// Parses the `chart` field (and optional `repo_url`) of a request.
    pub fn parse(
        chart: &str,
        repo_url: Option<&str>,
        policy: &ChartPolicy,
    ) -> Result<Self, ValidationError> {
        let bad = |why| ValidationError::Chart(truncate(chart), why);
        if chart.is_empty() {
            return Err(bad("it is empty"));
        }
        if chart.len() > MAX_URL_LEN {
            return Err(bad("it is longer than 512 characters"));
        }
        if chart.starts_with('-') {
            return Err(bad("it must not start with '-'"));
        }
        if chart.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it must not contain whitespace or control characters"));
        }
        let parsed = match repo_url {
            Some(repo) => Self::parse_repo_chart(chart, repo, policy)?,
            None => Self::parse_url_chart(chart, policy)?,
        };
        let source = parsed.source();
        if !policy.admits(source) {
            return Err(ValidationError::ChartSourceNotAllowed(truncate(source)));
        }
        Ok(parsed)
    }

    fn parse_url_chart(chart: &str, policy: &ChartPolicy) -> Result<Self, ValidationError> {
        let bad = |why| ValidationError::Chart(truncate(chart), why);
        if let Some(rest) = chart.strip_prefix("oci://") {
            let (host, path) = rest
                .split_once('/')
                .ok_or_else(|| bad("an oci:// reference needs a repository path"))?;
            check_host(host).map_err(bad)?;
            check_path(path).map_err(bad)?;
            if path.contains(['@', '?', '#']) {
                return Err(bad(
                    "an oci:// reference must not carry a tag, digest or query; use `version`",
                ));
            }
            return Ok(Self::Oci {
                url: chart.to_owned(),
                host: host.to_owned(),
            });
        }
        if chart.contains("://") {
            check_http_url(chart, policy).map_err(bad)?;
            return Ok(Self::Url(chart.to_owned()));
        }
        Err(bad(
            "use an oci:// or https:// reference, or a chart name with repo_url",
        ))
    }

    fn parse_repo_chart(
        chart: &str,
        repo: &str,
        policy: &ChartPolicy,
    ) -> Result<Self, ValidationError> {
        if !is_chart_name(chart) {
            return Err(ValidationError::Chart(
                truncate(chart),
                "with repo_url, chart must be a plain chart name",
            ));
        }
        if repo.len() > MAX_URL_LEN || repo.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ValidationError::RepoUrl(
                truncate(repo),
                "it is too long or contains whitespace",
            ));
        }
        check_http_url(repo, policy)
            .map_err(|why| ValidationError::RepoUrl(truncate(repo), why))?;
        Ok(Self::Repo {
            name: chart.to_owned(),
            repo_url: repo.trim_end_matches('/').to_owned(),
        })
    }

    /// The URL the chart is fetched from, as matched against the allow-list.
    pub fn source(&self) -> &str {
        match self {
            Self::Oci { url, .. } | Self::Url(url) => url,
            Self::Repo { repo_url, .. } => repo_url,
        }
    }

    /// Whether this chart's OCI registry is spoken to over plain HTTP.
    pub fn plain_http(&self, policy: &ChartPolicy) -> bool {
        match self {
            Self::Oci { host, .. } => policy.plain_http_registries.iter().any(|h| h == host),
            _ => false,
        }
    }
}

fn is_chart_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 250
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !value.contains("..")
}

fn check_http_url(url: &str, policy: &ChartPolicy) -> Result<(), &'static str> {
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if !policy.allow_http {
            return Err("http:// sources are not allowed by this operator");
        }
        rest
    } else {
        return Err("only oci://, https:// (and, when allowed, http://) sources are accepted");
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    check_host(host)?;
    check_path(path)
}

fn check_host(host: &str) -> Result<(), &'static str> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("the port is not a number");
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && !name.starts_with(['-', '.'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err("the host is not a valid host name")
    }
}

fn check_path(path: &str) -> Result<(), &'static str> {
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err("the path must not contain '.' or '..' segments");
    }
    if path.contains('\\') || path.contains('%') {
        return Err("the path must not contain '\\' or '%'");
    }
    Ok(())
}

/// A chart version: an exact semantic version or a semver range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartVersion(String);

impl ChartVersion {
    pub fn parse(value: &str) -> Result<Self, ValidationError> {
        let bad = || ValidationError::Version(truncate(value));
        if value.is_empty() || value.len() > 128 || value.starts_with('-') {
            return Err(bad());
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(bad());
        }
        let plain = value.strip_prefix('v').unwrap_or(value);
        if semver::Version::parse(plain).is_ok() || semver::VersionReq::parse(value).is_ok() {
            Ok(Self(value.to_owned()))
        } else {
            Err(bad())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A non-negative Kubernetes resource quantity such as `2`, `500m` or `4Gi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(String);

impl Quantity {
    pub fn parse(field: &'static str, value: &str) -> Result<Self, ValidationError> {
        if is_quantity(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(ValidationError::Quantity {
                field,
                value: truncate(value),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A quantity written in our own code (a default), known to be valid.
    pub fn known(value: &'static str) -> Self {
        debug_assert!(is_quantity(value), "{value}");
        Self(value.to_owned())
    }
}

/// Kubernetes' quantity grammar, without a sign (quotas are never negative).
fn is_quantity(value: &str) -> bool {
    if value.is_empty() || value.len() > 64 {
        return false;
    }
    let number_end = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(number_end);
    let digits = number.replace('.', "");
    let number_ok = !digits.is_empty() && number.matches('.').count() <= 1;
    let suffix_ok = matches!(
        suffix,
        "" | "n"
            | "u"
            | "m"
            | "k"
            | "M"
            | "G"
            | "T"
            | "P"
            | "E"
            | "Ki"
            | "Mi"
            | "Gi"
            | "Ti"
            | "Pi"
            | "Ei"
    ) || is_exponent(suffix);
    number_ok && suffix_ok
}

fn is_exponent(suffix: &str) -> bool {
    let Some(rest) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let rest = rest.strip_prefix(['+', '-']).unwrap_or(rest);
    !rest.is_empty() && rest.len() <= 3 && rest.bytes().all(|b| b.is_ascii_digit())
}

/// Caps echoed input so an error message never carries a huge value.
fn truncate(value: &str) -> String {
    const MAX: usize = 80;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

impl fmt::Display for TenantNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests;
