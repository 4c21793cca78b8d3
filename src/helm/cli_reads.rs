//! Release reads through the helm CLI, for storage the operator does not
//! read itself (HELM_DRIVER=sql) or when `RELEASE_READS=helm`.
//!
//! They give the same [`HelmRelease`] values as the storage reads (`crate::releases::store`): helm's
//! output is turned into the release record's JSON shape and decoded by the
//! same type. Each read runs these helm processes, through the shared
//! [`super::HelmRunner`] (bounded parallelism, deadlines):
//!
//! | read | helm processes |
//! |---|---|
//! | newest revision | `get all --template` (every field but the values), then `get values --revision N` (the values of that same revision) |
//! | history | `history -o json`: summaries (no values, no manifest), which is all its callers use |
//! | release names of a namespace | `list -o json` |
//!
//! `helm status -o json` is not used: neither major prints the chart's
//! metadata there, and Helm 4's also fetches every object of the release
//! (and its pods) from the cluster. No template function prints JSON, so
//! the template prints Go-quoted strings (`unquote_go`).
//!
//! A missing release is `None` or an empty history (404 at the edge); any
//! other failure stays a [`HelmError`], narrowed to what a read can mean.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::command;
use super::error::{FailureKind, HelmError};
use super::release::{ChartMetadata, HelmChart, HelmInfo, HelmRelease};
use super::runner::Invocation;
use super::{Helm, target};
use crate::names::{ReleaseName, TenantNamespace};

impl Helm {
    /// The newest revision (any status) as helm describes it.
    pub async fn latest_from_cli(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Option<HelmRelease>, HelmError> {
        self.revision_from_cli(namespace, name, None).await
    }

    /// One revision (the newest when `None`), manifest and hooks included.
    pub async fn revision_from_cli(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
        revision: Option<u32>,
    ) -> Result<Option<HelmRelease>, HelmError> {
        let args = self.as_tenant_args(namespace, command::get_release(namespace, name, revision));
        let Some(described) = self.read("get", target(namespace, name), args).await? else {
            return Ok(None);
        };
        let record = described_record(&described).map_err(|source| HelmError::Output {
            operation: "get",
            source,
        })?;
        let revision = record_revision(&record);
        let args = self.as_tenant_args(namespace, command::get_values(namespace, name, revision));
        // Gone between the two calls (uninstalled): as if never found.
        let Some(values) = self
            .read("get values", target(namespace, name), args)
            .await?
        else {
            return Ok(None);
        };
        release_from_outputs(record, &values)
            .map(Some)
            .map_err(|source| HelmError::Output {
                operation: "get values",
                source,
            })
    }

    /// Every revision helm keeps, oldest first (summaries).
    pub async fn history_from_cli(
        &self,
        namespace: &TenantNamespace,
        name: &ReleaseName,
    ) -> Result<Vec<HelmRelease>, HelmError> {
        let args = self.as_tenant_args(namespace, command::history(namespace, name));
        let Some(stdout) = self.read("history", target(namespace, name), args).await? else {
            return Ok(Vec::new());
        };
        history_from_output(namespace.as_str(), name.as_str(), &stdout).map_err(|source| {
            HelmError::Output {
                operation: "history",
                source,
            }
        })
    }

    /// Names of the releases in a namespace, any status.
    pub async fn release_names_from_cli(
        &self,
        namespace: &TenantNamespace,
    ) -> Result<Vec<String>, HelmError> {
        let args = self.as_tenant_args(namespace, command::list(namespace, self.version.major));
        let stdout = self
            .read("list", namespace.to_string(), args)
            .await?
            .unwrap_or_default();
        names_from_list(&stdout).map_err(|source| HelmError::Output {
            operation: "list",
            source,
        })
    }

    /// Runs a read; `None` when helm says there is no such release.
    async fn read(
        &self,
        operation: &'static str,
        target: String,
        args: Vec<String>,
    ) -> Result<Option<Vec<u8>>, HelmError> {
        let invocation = Invocation::helm(operation, target, args, None);
        match self.runner.run(invocation).await {
            Ok(output) => Ok(Some(output.stdout)),
            Err(HelmError::Failed {
                kind: FailureKind::ReleaseNotFound,
                ..
            }) => Ok(None),
            Err(HelmError::Failed {
                operation,
                target,
                kind,
            }) => Err(HelmError::Failed {
                operation,
                target,
                kind: read_failure(kind),
            }),
            Err(other) => Err(other),
        }
    }
}

/// What a failed read means. The stderr classification is written for
/// writes: an unreachable SQL database's "connection refused" would read as
/// an unreachable chart source. A read fails for want of the cluster, or
/// else it is a plain helm failure (500).
fn read_failure(kind: FailureKind) -> FailureKind {
    match kind {
        FailureKind::ClusterUnreachable => FailureKind::ClusterUnreachable,
        _ => FailureKind::Other,
    }
}

fn malformed(what: impl std::fmt::Display) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(what)
}

/// The record JSON (without `config`) from [`command::RELEASE_TEMPLATE`]'s output.
fn described_record(stdout: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    let text = std::str::from_utf8(stdout).map_err(malformed)?;
    let (mut record, mut info, mut metadata) = (Map::new(), Map::new(), Map::new());
    let mut hooks = Vec::new();
    for line in text.lines().filter(|line| !line.is_empty()) {
        let (key, raw) = line
            .split_once(' ')
            .ok_or_else(|| malformed(format!("line without a value: {key:.40}", key = line)))?;
        if key == "version" {
            let revision: u32 = raw.parse().map_err(malformed)?;
            record.insert(key.into(), revision.into());
            continue;
        }
        if key == "first_deployed" || key == "last_deployed" {
            // Go's zero time; Helm writes it into the record as "".
            let time = if raw.starts_with("0001-01-01T00:00:00") {
                ""
            } else {
                raw
            };
            info.insert(key.into(), time.into());
            continue;
        }
        let value = unquote_go(raw).ok_or_else(|| malformed(format!("{key}: not a Go string")))?;
        let (object, field) = match key {
            "name" | "namespace" | "manifest" => (&mut record, key),
            "status" | "description" => (&mut info, key),
            "chart" => (&mut metadata, "name"),
            "chart_version" => (&mut metadata, "version"),
            "app_version" => (&mut metadata, "appVersion"),
            "hook" => {
                hooks.push(json!({ "manifest": value }));
                continue;
            }
            _ => return Err(malformed(format!("unknown field {key:.40}"))),
        };
        object.insert(field.into(), value.into());
    }
    if !record.contains_key("name") || !record.contains_key("version") {
        return Err(malformed("no release name or revision"));
    }
    record.insert("info".into(), info.into());
    record.insert("chart".into(), json!({ "metadata": metadata }));
    record.insert("hooks".into(), hooks.into());
    Ok(record)
}

fn record_revision(record: &Map<String, Value>) -> u32 {
    record
        .get("version")
        .and_then(Value::as_u64)
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or_default()
}

/// The described record plus `helm get values -o json` (`null` when the
/// release has no user values), decoded as storage decodes a record.
fn release_from_outputs(
    mut record: Map<String, Value>,
    values: &[u8],
) -> Result<HelmRelease, serde_json::Error> {
    let values: Value = serde_json::from_slice(values)?;
    record.insert("config".into(), values);
    serde_json::from_value(Value::Object(record))
}

/// One revision as `helm history -o json` prints it (same in Helm 3 and 4).
#[derive(Deserialize)]
struct HistoryEntry {
    revision: u32,
    #[serde(default)]
    updated: String,
    #[serde(default)]
    status: String,
    /// `name-version`.
    #[serde(default)]
    chart: String,
    #[serde(default)]
    app_version: String,
    #[serde(default)]
    description: String,
}

fn history_from_output(
    namespace: &str,
    name: &str,
    stdout: &[u8],
) -> Result<Vec<HelmRelease>, serde_json::Error> {
    let entries: Vec<HistoryEntry> = serde_json::from_slice(stdout)?;
    let mut releases: Vec<HelmRelease> = entries
        .into_iter()
        .map(|entry| {
            let (chart_name, chart_version) = split_chart_label(&entry.chart);
            HelmRelease {
                name: name.to_owned(),
                namespace: namespace.to_owned(),
                version: entry.revision,
                info: HelmInfo {
                    first_deployed: None,
                    last_deployed: Some(entry.updated),
                    description: entry.description,
                    status: entry.status,
                },
                chart: HelmChart {
                    metadata: ChartMetadata {
                        name: chart_name,
                        version: chart_version,
                        app_version: entry.app_version,
                    },
                    values: None,
                },
                config: None,
                manifest: String::new(),
                hooks: Vec::new(),
            }
        })
        .collect();
    releases.sort_by_key(|r| r.version);
    Ok(releases)
}

/// Splits helm's `name-version` chart label. Chart versions are semantic
/// versions, so the version starts after the first `-` that is followed by
/// one (`my-app-1.2.3-rc.1` is `my-app` and `1.2.3-rc.1`); for loose
/// versions (`v2`, `1.0`), after the last `-`. Either way `name-version`
/// gives the label back, which is what the revisions list shows.
fn split_chart_label(label: &str) -> (String, String) {
    let cut = label
        .match_indices('-')
        .map(|(at, _)| at)
        .find(|at| semver::Version::parse(&label[at + 1..]).is_ok())
        .or_else(|| label.rfind('-'));
    match cut {
        Some(at) => (label[..at].to_owned(), label[at + 1..].to_owned()),
        None => (label.to_owned(), String::new()),
    }
}

/// Release names from `helm list -o json`, sorted, once each.
fn names_from_list(stdout: &[u8]) -> Result<Vec<String>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Listed {
        name: String,
    }
    // Helm prints nothing at all for an empty list in some versions.
    if stdout.trim_ascii().is_empty() {
        return Ok(Vec::new());
    }
    let listed: Vec<Listed> = serde_json::from_slice(stdout)?;
    let mut names: Vec<String> = listed.into_iter().map(|l| l.name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Decodes a string quoted by Go's `%q` (`strconv.Quote`): `"…"` with
/// `\a \b \f \n \r \t \v \\ \"`, `\xHH` bytes, `\uHHHH` and `\UHHHHHHHH`.
/// Bytes that are not UTF-8 become U+FFFD, as in the JSON Helm stores.
fn unquote_go(quoted: &str) -> Option<String> {
    let inner = quoted.strip_prefix('"')?.strip_suffix('"')?;
    let mut bytes = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        let decoded = match c {
            '"' => return None,
            '\\' => match chars.next()? {
                'a' => '\u{07}',
                'b' => '\u{08}',
                'f' => '\u{0c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'v' => '\u{0b}',
                '\\' => '\\',
                '"' => '"',
                '\'' => '\'',
                'x' => {
                    bytes.push(u8::try_from(hex(&mut chars, 2)?).ok()?);
                    continue;
                }
                'u' => char::from_u32(hex(&mut chars, 4)?)?,
                'U' => char::from_u32(hex(&mut chars, 8)?)?,
                _ => return None,
            },
            plain => plain,
        };
        let mut buffer = [0; 4];
        bytes.extend_from_slice(decoded.encode_utf8(&mut buffer).as_bytes());
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

/// The next `digits` characters as a hexadecimal number.
fn hex(chars: &mut std::str::Chars<'_>, digits: usize) -> Option<u32> {
    let text: String = chars.by_ref().take(digits).collect();
    if text.len() != digits {
        return None;
    }
    u32::from_str_radix(&text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ReleaseStatus;

    #[test]
    fn go_quoted_strings() {
        let cases = [
            (r#""plain""#, "plain"),
            (r#""""#, ""),
            (
                r#""say \"hi\" \\ back\ttab\nnew""#,
                "say \"hi\" \\ back\ttab\nnew",
            ),
            (r#""é 🚀""#, "é 🚀"),
            (
                r#""\a\b\f\r\v\x01\x7f""#,
                "\u{7}\u{8}\u{c}\r\u{b}\u{1}\u{7f}",
            ),
            (r#""\u00a0\U000e0067""#, "\u{a0}\u{e0067}"),
            (r#""bad \xff byte""#, "bad \u{fffd} byte"),
        ];
        for (quoted, expected) in cases {
            assert_eq!(unquote_go(quoted).as_deref(), Some(expected), "{quoted}");
        }
        for broken in [
            "plain",
            r#""open"#,
            r#""a"b""#,
            r#""\q""#,
            r#""\x4""#,
            r#""\u12""#,
            r#""\UFFFFFFFF""#,
            r#""trailing\""#,
        ] {
            assert_eq!(unquote_go(broken), None, "{broken}");
        }
    }

    #[test]
    fn chart_labels() {
        let split = |label: &str| split_chart_label(label);
        assert_eq!(split("web-0.1.0"), ("web".into(), "0.1.0".into()));
        assert_eq!(
            split("my-web-app-1.2.3-rc.1"),
            ("my-web-app".into(), "1.2.3-rc.1".into())
        );
        assert_eq!(
            split("postgresql-14-1.2.3"),
            ("postgresql-14".into(), "1.2.3".into())
        );
        assert_eq!(split("legacy-v2"), ("legacy".into(), "v2".into()));
        assert_eq!(split("MISSING"), ("MISSING".into(), String::new()));
    }

    #[test]
    fn template_output_is_checked() {
        assert!(described_record(b"name \"a\"\n").is_err(), "no revision");
        assert!(described_record(b"name \"a\"\nversion x\n").is_err());
        assert!(described_record(b"name \"a\"\nversion 1\nsurprise \"x\"\n").is_err());
        assert!(
            described_record(b"name a\nversion 1\n").is_err(),
            "unquoted"
        );
        let record = described_record(
            b"name \"a\"\nversion 3\nstatus \"pending-upgrade\"\nfirst_deployed 0001-01-01T00:00:00Z\n",
        )
        .unwrap();
        let release = release_from_outputs(record, b"null").unwrap();
        assert_eq!(release.version, 3);
        assert_eq!(release.status(), ReleaseStatus::PendingUpgrade);
        assert_eq!(release.info.first_deployed.as_deref(), Some(""));
        assert!(release.config.is_none());
        assert!(release.hooks.is_empty());
    }

    #[test]
    fn empty_and_duplicate_lists() {
        assert!(names_from_list(b"").unwrap().is_empty());
        assert!(names_from_list(b"[]\n").unwrap().is_empty());
        let names = names_from_list(br#"[{"name":"b"},{"name":"a"},{"name":"b"}]"#).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert!(names_from_list(b"NAME NAMESPACE").is_err());
    }

    #[test]
    fn only_the_cluster_survives_read_classification() {
        assert_eq!(
            read_failure(FailureKind::ClusterUnreachable),
            FailureKind::ClusterUnreachable
        );
        // An unreachable SQL database: "dial tcp …: connection refused".
        let sql_down = super::super::error::classify(
            "helm.go:83: unable to instantiate SQL driver: dial tcp 127.0.0.1:1: connect: connection refused",
        );
        assert_eq!(read_failure(sql_down), FailureKind::Other);
        assert_eq!(
            read_failure(FailureKind::RejectedByCluster),
            FailureKind::Other
        );
    }
}

/// Output captured from the real Helm 3.22 and Helm 4.3 binaries: release
/// `cap3`/`cap4` of the `hooks` test chart, installed with a tricky
/// `message` value (quotes, backslash, tab, bell, emoji, a non-printable
/// tag character, which Go quotes as `\U000e0067`) and upgraded with
/// `--reuse-values` and a tricky `--description`; its stored record of the
/// same revision is kept beside it, so the CLI reads are compared with the
/// storage reads field by field.
#[cfg(test)]
mod captured {
    use super::*;
    use crate::helm::release::decode_record;
    use crate::model::ReleaseStatus;

    struct Captured {
        get_all: &'static [u8],
        get_values: &'static [u8],
        history: &'static [u8],
        list: &'static [u8],
        record: &'static [u8],
        name: &'static str,
    }

    const HELM3: Captured = Captured {
        get_all: include_bytes!("testdata/helm3-get-all.txt"),
        get_values: include_bytes!("testdata/helm3-get-values.json"),
        history: include_bytes!("testdata/helm3-history.json"),
        list: include_bytes!("testdata/helm3-list.json"),
        record: include_bytes!("testdata/helm3-hooks-record.b64"),
        name: "cap3",
    };

    const HELM4: Captured = Captured {
        get_all: include_bytes!("testdata/helm4-get-all.txt"),
        get_values: include_bytes!("testdata/helm4-get-values.json"),
        history: include_bytes!("testdata/helm4-history.json"),
        list: include_bytes!("testdata/helm4-list.json"),
        record: include_bytes!("testdata/helm4-hooks-record.b64"),
        name: "cap4",
    };

    const NAMESPACE: &str = "paas-ws-c11ca900";

    fn cli_release(captured: &Captured) -> HelmRelease {
        let record = described_record(captured.get_all).unwrap();
        assert_eq!(record_revision(&record), 2);
        release_from_outputs(record, captured.get_values).unwrap()
    }

    fn same_as_storage(captured: &Captured) {
        let cli = cli_release(captured);
        let stored = decode_record("r", captured.record.trim_ascii()).unwrap();
        assert_eq!(cli.name, captured.name);
        assert_eq!(cli.namespace, NAMESPACE);
        assert_eq!(cli.summary(), stored.summary());
        assert_eq!(cli.config, stored.config);
        assert_eq!(cli.info.first_deployed, stored.info.first_deployed);
        assert_eq!(cli.info.last_deployed, stored.info.last_deployed);
        assert_eq!(cli.chart.metadata.version, stored.chart.metadata.version);
        assert_eq!(cli.manifest, stored.manifest);
        let hooks = |r: &HelmRelease| -> Vec<String> {
            r.hooks.iter().map(|h| h.manifest.clone()).collect()
        };
        assert_eq!(hooks(&cli), hooks(&stored));
        assert_eq!(cli.hooks.len(), 1);
        // The tricky strings survived both quotings.
        assert!(cli.info.description.contains("\"tricky\" \\ \ttab\nline2"));
        assert!(cli.info.description.contains("\u{1} ctl \u{e0067} tag"));
        assert!(
            cli.manifest
                .contains(r#"message: "say \"hi\" \\ back\ttab"#)
        );
        let values = cli.config.as_ref().unwrap();
        assert_eq!(values["secret"]["password"], "s3cret");
        assert_eq!(values["extra"]["list"], json!([1, "a", null, true]));
    }

    #[test]
    fn helm3_get_all_and_values_match_the_stored_record() {
        same_as_storage(&HELM3);
    }

    #[test]
    fn helm4_get_all_and_values_match_the_stored_record() {
        same_as_storage(&HELM4);
    }

    fn history_matches(captured: &Captured) {
        let history = history_from_output(NAMESPACE, captured.name, captured.history).unwrap();
        let versions: Vec<u32> = history.iter().map(|r| r.version).collect();
        assert_eq!(versions, [1, 2]);
        assert_eq!(history[0].status(), ReleaseStatus::Superseded);
        assert_eq!(history[0].info.description, "Install complete");
        let latest = cli_release(captured);
        assert_eq!(history[1].summary(), latest.summary());
        assert_eq!(
            (
                &*history[1].summary().chart,
                &*history[1].summary().chart_version
            ),
            ("hooks", "0.1.0")
        );
    }

    #[test]
    fn helm3_history() {
        history_matches(&HELM3);
    }

    #[test]
    fn helm4_history() {
        history_matches(&HELM4);
    }

    #[test]
    fn list_of_both_majors() {
        for captured in [&HELM3, &HELM4] {
            assert_eq!(
                names_from_list(captured.list).unwrap(),
                ["cap3", "cap4", "sample3", "sample4"]
            );
        }
    }
}
