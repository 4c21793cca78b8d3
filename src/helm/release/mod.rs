//! Helm's release record (the JSON Helm 3 and Helm 4 store per revision and
//! print with `-o json`). The contract's types are made from it by the
//! release service (`crate::releases::wire`).
//!
//! Only the fields we use are declared; unknown fields are ignored, so both
//! majors' records decode. Chart name and version come from the chart's
//! metadata, never from splitting strings.
//!
//! Storage (Helm's default driver): one Secret per revision, type
//! `helm.sh/release.v1`, named `sh.helm.release.v1.<name>.v<revision>`,
//! labelled `owner=helm,name=<name>,version=<revision>,status=…`; the
//! ConfigMap driver uses the same names and labels. The payload is
//! base64(gzip(JSON)) (inside the Secret's own base64).
//!
//! Decoding is streaming and bounded: the gzip stream is read as it
//! inflates, serde keeps only the declared fields (a chart's templates,
//! files and schema are skipped without being allocated), and a reader
//! caps how much is inflated.
//!
//! - [`decode_record`]: the whole revision (manifest, hooks, values, the
//!   chart's default values), for writes (rollback, reapply, uninstall
//!   checks), at most [`MAX_RECORD`] inflated: helm itself loads the whole
//!   record to act on it;
//! - [`decode_summary`]: a [`ReleaseSummary`] (what GET release, revisions
//!   and status show) plus whatever a caller's digest makes of the manifest
//!   (at most [`MAX_MANIFEST`]), which is then dropped; nothing else is
//!   allocated, so only a CPU bound applies: [`MAX_INFLATED`].

use std::io::{BufReader, Read};
use std::time::Duration;

use base64::Engine;
use flate2::read::MultiGzDecoder;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::model::ReleaseStatus;

/// One revision of a release as Helm records it.
#[derive(Debug, Clone, Deserialize)]
pub struct HelmRelease {
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    /// The revision number (Helm calls it `version`).
    pub version: u32,
    #[serde(default)]
    pub info: HelmInfo,
    #[serde(default)]
    pub chart: HelmChart,
    /// User-supplied values of this revision.
    #[serde(default)]
    pub config: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "capped_text")]
    pub manifest: String,
    /// Hook objects (rendered separately from the main manifest).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub hooks: Vec<HelmHook>,
}

/// A hook of a release; only its rendered manifest is used.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmHook {
    #[serde(default, deserialize_with = "capped_text")]
    pub manifest: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmInfo {
    #[serde(default)]
    pub first_deployed: Option<String>,
    #[serde(default)]
    pub last_deployed: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: String,
}

impl HelmInfo {
    /// When the revision was last deployed, as RFC 3339 in UTC.
    fn updated(&self) -> String {
        let raw = self
            .last_deployed
            .as_deref()
            .or(self.first_deployed.as_deref());
        raw.map(to_rfc3339).unwrap_or_default()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HelmChart {
    #[serde(default)]
    pub metadata: ChartMetadata,
    /// The chart's default values (`values.yaml`).
    #[serde(default)]
    pub values: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChartMetadata {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default, rename = "appVersion")]
    pub app_version: String,
}

/// One revision without its payloads (manifest, hooks, values, chart):
/// what GET release, revisions and status show. The read cache keeps one
/// per revision, so it is kept small (boxed strings, no maps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseSummary {
    pub name: Box<str>,
    pub namespace: Box<str>,
    /// The revision number.
    pub version: u32,
    /// Helm's status as recorded (`deployed`, `pending-upgrade`, …).
    pub status: Box<str>,
    pub description: Box<str>,
    /// When it was last deployed, RFC 3339 in UTC (as recorded when that
    /// does not parse; empty when absent).
    pub updated: Box<str>,
    pub chart: Box<str>,
    pub chart_version: Box<str>,
    pub app_version: Box<str>,
}

impl ReleaseSummary {
    fn new(
        name: String,
        namespace: String,
        version: u32,
        info: &HelmInfo,
        chart: &ChartMetadata,
    ) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            version,
            status: info.status.as_str().into(),
            description: info.description.as_str().into(),
            updated: info.updated().into(),
            chart: chart.name.as_str().into(),
            chart_version: chart.version.as_str().into(),
            app_version: chart.app_version.as_str().into(),
        }
    }

    pub fn status(&self) -> ReleaseStatus {
        ReleaseStatus::from_helm(&self.status)
    }

    /// `pending-*` and last touched longer than `limit` ago: the helm that
    /// set it is gone.
    pub fn is_stale_pending(&self, limit: Duration) -> bool {
        stale_pending(self.status(), self.updated.parse().ok(), limit)
    }
}

/// A revision known only by its summary (a history read without payloads):
/// no manifest, hooks or values.
impl From<ReleaseSummary> for HelmRelease {
    fn from(summary: ReleaseSummary) -> Self {
        let updated = Some(summary.updated.to_string()).filter(|u| !u.is_empty());
        Self {
            name: summary.name.into(),
            namespace: summary.namespace.into(),
            version: summary.version,
            info: HelmInfo {
                first_deployed: None,
                last_deployed: updated,
                description: summary.description.into(),
                status: summary.status.into(),
            },
            chart: HelmChart {
                metadata: ChartMetadata {
                    name: summary.chart.into(),
                    version: summary.chart_version.into(),
                    app_version: summary.app_version.into(),
                },
                values: None,
            },
            config: None,
            manifest: String::new(),
            hooks: Vec::new(),
        }
    }
}

impl HelmRelease {
    pub fn status(&self) -> ReleaseStatus {
        ReleaseStatus::from_helm(&self.info.status)
    }

    /// When this revision was last deployed, as RFC 3339 in UTC.
    pub fn updated(&self) -> String {
        self.info.updated()
    }

    /// The last-deployed time as a timestamp, if it parses.
    pub fn updated_at(&self) -> Option<jiff::Timestamp> {
        let raw = self
            .info
            .last_deployed
            .as_deref()
            .or(self.info.first_deployed.as_deref())?;
        raw.parse().ok()
    }

    /// This revision without its payloads.
    pub fn summary(&self) -> ReleaseSummary {
        ReleaseSummary::new(
            self.name.clone(),
            self.namespace.clone(),
            self.version,
            &self.info,
            &self.chart.metadata,
        )
    }

    /// The manifest and every hook as one multi-document rendering: all
    /// that applying this revision creates.
    pub fn rendering(&self) -> String {
        let mut rendering = self.manifest.clone();
        for hook in &self.hooks {
            rendering.push_str("\n---\n");
            rendering.push_str(&hook.manifest);
        }
        rendering
    }

    /// The chart this revision was made from.
    pub fn chart_identity(&self) -> crate::helm::wrapper::ChartIdentity {
        let metadata = &self.chart.metadata;
        crate::helm::wrapper::ChartIdentity {
            name: metadata.name.clone(),
            version: metadata.version.clone(),
            app_version: metadata.app_version.clone(),
            default_values: self.chart.values.clone().unwrap_or_default(),
        }
    }

    /// `pending-*` and last touched longer than `limit` ago: the helm that
    /// set it is gone.
    pub fn is_stale_pending(&self, limit: Duration) -> bool {
        stale_pending(self.status(), self.updated_at(), limit)
    }
}

fn stale_pending(status: ReleaseStatus, at: Option<jiff::Timestamp>, limit: Duration) -> bool {
    let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
    status.is_pending()
        && at.is_some_and(|at| jiff::Timestamp::now().duration_since(at).as_secs() > limit)
}

/// Largest encoded record accepted (etcd caps objects near 1.5 MiB).
const MAX_ENCODED: usize = 4 << 20;
/// Most bytes a summary read may inflate: a bound on the CPU one record
/// costs (gzip bombs). The JSON is parsed as it inflates and what a summary
/// skips is never allocated, so this much is never held in memory.
#[cfg(not(test))]
pub const MAX_INFLATED: u64 = 256 << 20;
/// Largest manifest a summary read hands to its digest (parsed for the
/// workloads' selectors, then dropped).
#[cfg(not(test))]
pub const MAX_MANIFEST: usize = 32 << 20;
/// Most bytes a whole record (for writes) may inflate to: what helm itself
/// loads to act on the revision. etcd keeps a record under ~1.5 MiB
/// compressed, and renderings are capped at 8 MiB of JSON when installed,
/// so every release installed through the operator stays readable; a larger
/// one was forged, and a write refuses it (409) before helm runs.
#[cfg(not(test))]
pub const MAX_RECORD: u64 = 16 << 20;
// Unit tests exercise the caps with small inputs (a 256 MiB gzip bomb
// takes seconds to build in a debug build); the end-to-end tests link the
// real values.
#[cfg(test)]
pub const MAX_INFLATED: u64 = 4 << 20;
#[cfg(test)]
pub const MAX_MANIFEST: usize = 1 << 20;
#[cfg(test)]
pub const MAX_RECORD: u64 = 2 << 20;
const _: () = assert!(MAX_MANIFEST as u64 <= MAX_INFLATED && MAX_RECORD <= MAX_INFLATED);
/// Read buffer between the inflater and the JSON parser.
const READ_BUFFER: usize = 64 << 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The parse error a too-large manifest raises (told apart from corruption).
const MANIFEST_TOO_LARGE: &str = "manifest larger than the accepted maximum";

/// A release record that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record could not be decoded.
    #[error("release record {record} is corrupt: {reason}")]
    Corrupt { record: String, reason: String },
    /// The record is larger than we accept.
    #[error("release record {record} is larger than the accepted maximum")]
    TooLarge { record: String },
}

/// Decodes Helm's payload into the whole revision (base64, then gzip when
/// the magic bytes say so, then JSON, as a stream).
pub fn decode_record(record: &str, encoded: &[u8]) -> Result<HelmRelease, RecordError> {
    read_payload(
        record,
        encoded,
        MAX_RECORD,
        std::marker::PhantomData::<HelmRelease>,
    )
}

/// Decodes only what the read endpoints show ([`ReleaseSummary`]); the
/// manifest is handed to `digest` (e.g. to find the workloads' selectors)
/// and dropped, and the hooks, values and chart are skipped unallocated.
/// `digest` sees an empty manifest when the record has none.
pub fn decode_summary<T: Default>(
    record: &str,
    encoded: &[u8],
    digest: impl FnMut(&str) -> T,
) -> Result<(ReleaseSummary, T), RecordError> {
    read_payload(record, encoded, MAX_INFLATED, SummarySeed(digest))
}

/// [`decode_summary`] of a record helm could load whole (at most
/// [`MAX_RECORD`] inflated), for writes: they act on records helm must
/// load, so a larger one is refused before helm runs.
pub fn decode_loadable_summary(
    record: &str,
    encoded: &[u8],
) -> Result<ReleaseSummary, RecordError> {
    read_payload(record, encoded, MAX_RECORD, SummarySeed(|_: &str| ()))
        .map(|(summary, ())| summary)
}

/// Helm's payload to the release JSON bytes, for the one writer that
/// rewrites a record whole (stuck-release recovery); capped at
/// [`MAX_RECORD`].
pub fn decode_payload(record: &str, encoded: &[u8]) -> Result<Vec<u8>, RecordError> {
    let bytes = unwrap_base64(record, encoded)?;
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut capped = Capped::new(MultiGzDecoder::new(bytes.as_slice()), MAX_RECORD);
    let mut out = Vec::new();
    match capped.read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(_) if capped.exceeded => Err(too_large(record)),
        Err(e) => Err(corrupt(record, format!("gzip: {e}"))),
    }
}

fn too_large(record: &str) -> RecordError {
    RecordError::TooLarge {
        record: record.to_owned(),
    }
}

fn corrupt(record: &str, reason: String) -> RecordError {
    RecordError::Corrupt {
        record: record.to_owned(),
        reason,
    }
}

fn unwrap_base64(record: &str, encoded: &[u8]) -> Result<Vec<u8>, RecordError> {
    if encoded.len() > MAX_ENCODED {
        return Err(too_large(record));
    }
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| corrupt(record, format!("base64: {e}")))
}

/// Base64, then (when gzipped) inflation and JSON as one stream into
/// `seed`, at most `limit` bytes of JSON.
fn read_payload<T, S>(record: &str, encoded: &[u8], limit: u64, seed: S) -> Result<T, RecordError>
where
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    let bytes = unwrap_base64(record, encoded)?;
    if bytes.starts_with(&GZIP_MAGIC) {
        // Go's gzip reader reads every member; so do we, to read what helm reads.
        parse_json(record, MultiGzDecoder::new(bytes.as_slice()), limit, seed)
    } else {
        parse_json(record, bytes.as_slice(), limit, seed)
    }
}

fn parse_json<T, R, S>(record: &str, reader: R, limit: u64, seed: S) -> Result<T, RecordError>
where
    R: Read,
    S: for<'de> DeserializeSeed<'de, Value = T>,
{
    let mut capped = Capped::new(reader, limit);
    let parsed = {
        let buffered = BufReader::with_capacity(READ_BUFFER, &mut capped);
        let mut json = serde_json::Deserializer::from_reader(buffered);
        seed.deserialize(&mut json)
            .and_then(|value| json.end().map(|()| value))
    };
    parsed.map_err(|error| {
        if capped.exceeded || error.to_string().contains(MANIFEST_TOO_LARGE) {
            too_large(record)
        } else if error.is_io() {
            corrupt(record, format!("gzip: {error}"))
        } else {
            corrupt(record, format!("json: {error}"))
        }
    })
}

/// A reader that fails once more than its limit came through.
struct Capped<R> {
    inner: R,
    left: u64,
    exceeded: bool,
}

impl<R> Capped<R> {
    fn new(inner: R, limit: u64) -> Self {
        Self {
            inner,
            left: limit,
            exceeded: false,
        }
    }
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // At the cap: only the end of the stream is still acceptable.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? == 0 {
                return Ok(0);
            }
            self.exceeded = true;
            return Err(std::io::Error::other("record inflates past the limit"));
        }
        let room = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let read = self.inner.read(&mut buf[..room])?;
        self.left -= read as u64;
        Ok(read)
    }
}

/// A manifest, refused over [`MAX_MANIFEST`].
fn capped_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?.unwrap_or_default();
    if text.len() > MAX_MANIFEST {
        return Err(de::Error::custom(MANIFEST_TOO_LARGE));
    }
    Ok(text)
}

/// The top-level fields a summary reads; everything else is skipped.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum SummaryField {
    Name,
    Namespace,
    Version,
    Info,
    Chart,
    Manifest,
    #[serde(other)]
    Other,
}

/// Of the chart, only its metadata (templates, files, values skipped).
#[derive(Default, Deserialize)]
struct ChartHead {
    #[serde(default)]
    metadata: Option<ChartMetadata>,
}

struct SummarySeed<F>(F);

impl<'de, T: Default, F: FnMut(&str) -> T> DeserializeSeed<'de> for SummarySeed<F> {
    type Value = (ReleaseSummary, T);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, T: Default, F: FnMut(&str) -> T> Visitor<'de> for SummarySeed<F> {
    type Value = (ReleaseSummary, T);

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Helm release record")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut name, mut namespace, mut version) = (None, String::new(), None);
        let (mut info, mut chart, mut digest) =
            (HelmInfo::default(), ChartMetadata::default(), None);
        // A repeated key replaces the earlier value, as in Go's decoder.
        while let Some(field) = map.next_key::<SummaryField>()? {
            match field {
                SummaryField::Name => name = Some(map.next_value::<String>()?),
                SummaryField::Namespace => {
                    namespace = map.next_value::<Option<String>>()?.unwrap_or_default();
                }
                SummaryField::Version => version = Some(map.next_value::<u32>()?),
                SummaryField::Info => {
                    info = map.next_value::<Option<HelmInfo>>()?.unwrap_or_default()
                }
                SummaryField::Chart => {
                    let head = map.next_value::<Option<ChartHead>>()?.unwrap_or_default();
                    chart = head.metadata.unwrap_or_default();
                }
                SummaryField::Manifest => {
                    digest = Some(map.next_value_seed(ManifestSeed(&mut self.0))?);
                }
                SummaryField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let version = version.ok_or_else(|| de::Error::missing_field("version"))?;
        let digest = digest.unwrap_or_else(|| (self.0)(""));
        Ok((
            ReleaseSummary::new(name, namespace, version, &info, &chart),
            digest,
        ))
    }
}

/// Hands the manifest to the digest straight from the parser's buffer: it
/// is never copied or kept.
struct ManifestSeed<'a, F>(&'a mut F);

impl<'de, T, F: FnMut(&str) -> T> DeserializeSeed<'de> for ManifestSeed<'_, F> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de, T, F: FnMut(&str) -> T> Visitor<'de> for ManifestSeed<'_, F> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a manifest string")
    }

    fn visit_none<E: de::Error>(self) -> Result<T, E> {
        Ok((self.0)(""))
    }

    fn visit_unit<E: de::Error>(self) -> Result<T, E> {
        Ok((self.0)(""))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        deserializer.deserialize_str(self)
    }

    fn visit_str<E: de::Error>(self, manifest: &str) -> Result<T, E> {
        if manifest.len() > MAX_MANIFEST {
            return Err(E::custom(MANIFEST_TOO_LARGE));
        }
        Ok((self.0)(manifest))
    }
}

/// Go writes a nil slice as `null`.
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Normalises Go's RFC 3339 (with nanoseconds and any offset) to UTC RFC 3339.
/// Unparseable input is passed through rather than invented.
fn to_rfc3339(raw: &str) -> String {
    match raw.parse::<jiff::Timestamp>() {
        Ok(ts) => ts.to_string(),
        Err(_) => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests;
