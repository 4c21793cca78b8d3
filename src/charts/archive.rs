//! The inspection of a chart archive before helm sees it: bounded in what
//! it decompresses, and refusing any values schema (of the chart, or of any
//! subchart, packed or not) that could make helm reach outside the chart
//! ([`super::schema`]).
//!
//! Files are named as helm's archive loader names them (Helm 3.22 and 4.3,
//! `LoadArchiveFiles`): the first path component dropped, `\` taken as the
//! separator when the name holds one, `path.Clean`ed, absolute or `..`
//! names refused; a PAX `path` wins over a GNU long name, as in Go's
//! `archive/tar`; gzip members are read to the last, as Go's reader does.
//! What is checked is a superset of what helm validates:
//!
//! - every file named `values.schema.json`, at any depth;
//! - every `.tgz` directly in a directory named `charts`, opened and
//!   inspected the same way (helm loads those as subcharts).
//!
//! Bounds (helm has the first two per archive; these hold for the whole
//! tree): [`MAX_DATA`] of file contents, [`MAX_FILE`] per file (Helm 3's
//! limit; Helm 4 has none), [`MAX_ENTRIES`] entries, [`MAX_DEPTH`] levels
//! of packed subcharts, and [`MAX_STREAM`] of decompressed tar stream.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use flate2::read::MultiGzDecoder;

use super::schema::{self, SchemaProblem};

/// Most bytes of file contents in the whole tree (helm: per archive).
pub const MAX_DATA: u64 = 100 << 20;
/// Most bytes of one file (Helm 3's `MaxDecompressedFileSize`).
pub const MAX_FILE: u64 = 5 << 20;
/// Most tar entries in the whole tree.
pub const MAX_ENTRIES: usize = 10_000;
/// Most levels of archives: the chart, and packed subcharts within.
pub const MAX_DEPTH: usize = 5;
/// Most decompressed tar bytes (contents, headers and padding) in the
/// whole tree: bounds the work on archives of tiny files or huge headers.
pub const MAX_STREAM: u64 = 128 << 20;

/// Why an archive is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The archive itself.
    Archive(ArchiveProblem),
    /// A values schema could reach outside the chart.
    Schema {
        problem: SchemaProblem,
        /// In a subchart rather than the chart itself.
        subchart: bool,
    },
}

/// What is wrong with an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveProblem {
    /// Not a gzip-compressed tar archive (or a packed subchart is not).
    Unreadable,
    /// More than [`MAX_DATA`] of file contents, or [`MAX_STREAM`] of tar.
    TooLarge,
    /// A file larger than [`MAX_FILE`].
    FileTooLarge,
    /// More than [`MAX_ENTRIES`] entries.
    TooManyEntries,
    /// Packed subcharts nested deeper than [`MAX_DEPTH`].
    NestedTooDeep,
    /// A name helm refuses: absolute, outside the chart, a drive path, or
    /// a file beside the chart's directory.
    BadPath,
    /// An entry tar readers may read differently (sparse files, a PAX path
    /// and a GNU long name that disagree).
    Ambiguous,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Archive(problem) => write!(f, "{problem}"),
            Self::Schema { problem, subchart } => {
                let whose = if *subchart {
                    "a subchart's"
                } else {
                    "the chart's"
                };
                write!(f, "{whose} values.schema.json {problem}")
            }
        }
    }
}

impl std::fmt::Display for ArchiveProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unreadable => {
                "the chart (or a packed subchart) is not a gzip-compressed tar archive"
            }
            Self::TooLarge => "the chart holds more than 100 MiB once decompressed",
            Self::FileTooLarge => "the chart holds a file larger than 5 MiB",
            Self::TooManyEntries => "the chart holds more than 10000 files",
            Self::NestedTooDeep => "the chart's packed subcharts are nested more than 5 deep",
            Self::BadPath => "the chart holds a file outside its directory",
            Self::Ambiguous => "the chart's archive has entries tar readers may read differently",
        })
    }
}

/// What an accepted archive holds (for the log).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inspection {
    pub files: usize,
    pub schemas: usize,
    pub subchart_archives: usize,
}

/// Inspects a chart archive read from `reader`.
pub fn inspect(reader: impl Read) -> Result<Inspection, Refusal> {
    let mut walk = Walk {
        stream_left: Rc::new(Cell::new(MAX_STREAM)),
        data_left: MAX_DATA,
        found: Inspection::default(),
    };
    walk.archive(reader, 0)?;
    Ok(walk.found)
}

/// The state of one inspection, across nested archives.
struct Walk {
    /// Decompressed bytes still allowed, shared by every open decoder.
    stream_left: Rc<Cell<u64>>,
    data_left: u64,
    found: Inspection,
}

impl Walk {
    fn archive(&mut self, reader: impl Read, depth: usize) -> Result<(), Refusal> {
        if depth >= MAX_DEPTH {
            return Err(Refusal::Archive(ArchiveProblem::NestedTooDeep));
        }
        let stream = Budgeted {
            inner: MultiGzDecoder::new(reader),
            left: self.stream_left.clone(),
        };
        let mut archive = tar::Archive::new(stream);
        // Raw: extension headers come as entries, read here with Go's
        // limits, rather than read whole by the tar crate.
        let mut entries = archive.entries().map_err(|e| read_error(&e))?;
        entries = entries.raw(true);
        let mut pending = Pending::default();
        for entry in entries {
            let mut entry = entry.map_err(|e| read_error(&e))?;
            self.found.files += 1;
            if self.found.files > MAX_ENTRIES {
                return Err(Refusal::Archive(ArchiveProblem::TooManyEntries));
            }
            let Some(raw_name) = pending.name_of(&mut entry)? else {
                continue;
            };
            let name = helm_name(&raw_name)?;
            let size = entry.size();
            if size > MAX_FILE {
                return Err(Refusal::Archive(ArchiveProblem::FileTooLarge));
            }
            if size > self.data_left {
                return Err(Refusal::Archive(ArchiveProblem::TooLarge));
            }
            self.data_left -= size;
            let is_schema = name.rsplit('/').next() == Some("values.schema.json");
            let is_subchart = is_packed_subchart(&name);
            if !is_schema && !is_subchart {
                // Skipped, but still decompressed (and counted) when the
                // next entry is read.
                continue;
            }
            let data = read_capped(&mut entry, MAX_FILE)?;
            if is_schema {
                self.found.schemas += 1;
                let bytes = data.strip_prefix(UTF8_BOM).unwrap_or(&data);
                schema::check(bytes).map_err(|problem| Refusal::Schema {
                    problem,
                    subchart: depth > 0 || name.contains("charts/"),
                })?;
            }
            if is_subchart {
                self.found.subchart_archives += 1;
                self.archive(&data[..], depth + 1)
                    .map_err(|refusal| match refusal {
                        Refusal::Schema { problem, .. } => Refusal::Schema {
                            problem,
                            subchart: true,
                        },
                        other => other,
                    })?;
            }
        }
        if pending.is_set() {
            // Extension headers describing a member that never came.
            return Err(Refusal::Archive(ArchiveProblem::Unreadable));
        }
        Ok(())
    }
}

const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Most bytes of a PAX or GNU long-name header (Go's `maxSpecialFileSize`).
const MAX_SPECIAL: u64 = 1 << 20;

/// Extension headers seen before the member they describe.
#[derive(Default)]
struct Pending {
    pax_path: Option<Vec<u8>>,
    pax_seen: bool,
    long_name: Option<Vec<u8>>,
    long_link_seen: bool,
}

impl Pending {
    fn is_set(&self) -> bool {
        self.pax_seen || self.long_name.is_some() || self.long_link_seen
    }

    /// Takes in an extension header (`None`), or names a member as Go's
    /// `archive/tar` does (a PAX path over a GNU long name over the
    /// header's own), then forgets what described it. Directories and
    /// global headers, which helm skips, are `None` as well.
    fn name_of<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<Option<String>, Refusal> {
        let ambiguous = Err(Refusal::Archive(ArchiveProblem::Ambiguous));
        let header = entry.header();
        let kind = header.entry_type();
        if header.as_ustar().is_some() && header.as_bytes()[508..] == *b"tar\0" {
            // Go reads such a "star" header's prefix shorter than others do.
            return ambiguous;
        }
        if kind.is_pax_local_extensions() {
            if self.pax_seen {
                return ambiguous;
            }
            self.pax_seen = true;
            let data = read_capped(entry, MAX_SPECIAL)?;
            for record in tar::PaxExtensions::new(&data) {
                let record = record.map_err(|_| Refusal::Archive(ArchiveProblem::Unreadable))?;
                let key = record.key_bytes();
                // Sparse maps and sizes would make Go read the member
                // differently from a reader that ignores them.
                if key == b"size" || key.starts_with(b"GNU.sparse") {
                    return ambiguous;
                }
                if key == b"path" {
                    self.pax_path = Some(record.value_bytes().to_vec());
                }
            }
            return Ok(None);
        }
        if kind.is_gnu_longname() {
            if self.long_name.is_some() {
                return ambiguous;
            }
            let data = read_capped(entry, MAX_SPECIAL)?;
            let end = data.iter().position(|b| *b == 0).unwrap_or(data.len());
            self.long_name = Some(data[..end].to_vec());
            return Ok(None);
        }
        if kind.is_gnu_longlink() {
            if self.long_link_seen {
                return ambiguous;
            }
            self.long_link_seen = true;
            read_capped(entry, MAX_SPECIAL)?;
            return Ok(None);
        }
        if kind.is_pax_global_extensions() {
            if self.is_set() {
                return ambiguous;
            }
            read_capped(entry, MAX_SPECIAL)?;
            return Ok(None);
        }
        if kind.is_gnu_sparse() {
            return ambiguous;
        }
        let pending = std::mem::take(self);
        if kind.is_dir() {
            return Ok(None);
        }
        let raw = pending
            .pax_path
            .or(pending.long_name)
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        Ok(Some(String::from_utf8_lossy(&raw).into_owned()))
    }
}

/// Reads an entry's data, refusing more than `limit` bytes.
fn read_capped<R: Read>(entry: &mut tar::Entry<'_, R>, limit: u64) -> Result<Vec<u8>, Refusal> {
    if entry.size() > limit {
        return Err(Refusal::Archive(if limit == MAX_FILE {
            ArchiveProblem::FileTooLarge
        } else {
            ArchiveProblem::Ambiguous
        }));
    }
    let mut data = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
    entry
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_error(&e))?;
    Ok(data)
}

/// A `.tgz` directly in a directory named `charts`.
fn is_packed_subchart(name: &str) -> bool {
    let mut parts = name.rsplit('/');
    let file = parts.next().unwrap_or_default();
    file.ends_with(".tgz") && parts.next() == Some("charts")
}

/// helm's name for a tar entry named `raw` (`LoadArchiveFiles`).
pub fn helm_name(raw: &str) -> Result<String, Refusal> {
    let bad = Err(Refusal::Archive(ArchiveProblem::BadPath));
    let delimiter = if raw.contains('\\') { '\\' } else { '/' };
    let parts: Vec<&str> = raw.split(delimiter).collect();
    let joined = parts[1..]
        .join(&delimiter.to_string())
        .replace(delimiter, "/");
    if joined.starts_with('/') {
        return bad;
    }
    let name = clean(&joined);
    if name == "." || name.starts_with("..") {
        return bad;
    }
    let drive = name.as_bytes();
    if drive.len() >= 3 && drive[0].is_ascii_alphabetic() && drive[1] == b':' && drive[2] == b'/' {
        return bad;
    }
    if parts[0] == "Chart.yaml" {
        return bad;
    }
    Ok(name)
}

/// Go's `path.Clean` for a relative path.
fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." if out.last().is_some_and(|last| *last != "..") => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        ".".to_owned()
    } else {
        out.join("/")
    }
}

/// The refusal for a read error: over the budget, or not an archive.
fn read_error(error: &std::io::Error) -> Refusal {
    let over = error
        .get_ref()
        .is_some_and(|inner| inner.is::<OverBudget>());
    Refusal::Archive(if over {
        ArchiveProblem::TooLarge
    } else {
        ArchiveProblem::Unreadable
    })
}

#[derive(Debug)]
struct OverBudget;

impl std::fmt::Display for OverBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("more decompressed data than allowed")
    }
}

impl std::error::Error for OverBudget {}

/// A reader that fails once the shared budget is spent.
struct Budgeted<R> {
    inner: R,
    left: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        let left = self.left.get();
        let used = read as u64;
        if used > left {
            return Err(std::io::Error::other(OverBudget));
        }
        self.left.set(left - used);
        Ok(read)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    /// A gzip-compressed tar archive of `files` (name, contents).
    pub(crate) fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder
                .append_data(&mut header, name, *data)
                .expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    const CHART_YAML: &[u8] = b"apiVersion: v2\nname: web\nversion: 0.1.0\n";

    #[test]
    fn a_plain_chart_is_accepted() {
        let archive = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/values.yaml", b"a: 1\n"),
            (
                "web/values.schema.json",
                br##"{"$schema":"http://json-schema.org/draft-07/schema#","properties":{"a":{"$ref":"#/definitions/a"}},"definitions":{"a":{"type":"integer"}}}"##,
            ),
            ("web/templates/cm.yaml", b"kind: ConfigMap\n"),
        ]);
        let found = inspect(&archive[..]).expect("accepted");
        assert_eq!(found.files, 4);
        assert_eq!(found.schemas, 1);
    }

    #[test]
    fn schemas_are_found_in_the_chart_and_every_subchart() {
        let remote = br#"{"properties":{"a":{"$ref":"http://127.0.0.1:9/x.json"}}}"#;
        let top = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/values.schema.json", remote),
        ]);
        assert_eq!(
            inspect(&top[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::RemoteReference,
                subchart: false
            })
        );
        // An unpacked subchart, and a BOM in front (helm strips it).
        let mut with_bom = UTF8_BOM.to_vec();
        with_bom.extend_from_slice(br#"{"$schema":"file:///etc/hostname"}"#);
        let unpacked = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/charts/sub/Chart.yaml", CHART_YAML),
            ("web/charts/sub/values.schema.json", &with_bom),
        ]);
        assert_eq!(
            inspect(&unpacked[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::UnknownMetaSchema,
                subchart: true
            })
        );
        // A packed subchart inside a packed subchart.
        let inner = tgz(&[
            ("deep/Chart.yaml", CHART_YAML),
            ("deep/values.schema.json", remote),
        ]);
        let middle = tgz(&[
            ("mid/Chart.yaml", CHART_YAML),
            ("mid/charts/deep-0.1.0.tgz", &inner),
        ]);
        let outer = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/charts/mid-0.1.0.tgz", &middle),
        ]);
        assert_eq!(
            inspect(&outer[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::RemoteReference,
                subchart: true
            })
        );
        // The same tree with a local schema is fine.
        let inner = tgz(&[
            ("deep/Chart.yaml", CHART_YAML),
            ("deep/values.schema.json", b"{}"),
        ]);
        let middle = tgz(&[
            ("mid/Chart.yaml", CHART_YAML),
            ("mid/charts/deep-0.1.0.tgz", &inner),
        ]);
        let outer = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/charts/mid-0.1.0.tgz", &middle),
        ]);
        let found = inspect(&outer[..]).expect("accepted");
        assert_eq!((found.schemas, found.subchart_archives), (1, 2));
    }

    #[test]
    fn a_second_gzip_member_is_read_as_go_reads_it() {
        // helm (Go) reads concatenated gzip members as one stream: a schema
        // hidden in a second member must be seen.
        let first = {
            let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
            let mut builder = tar::Builder::new(Vec::new());
            let mut header = tar::Header::new_gnu();
            header.set_size(CHART_YAML.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, "web/Chart.yaml", CHART_YAML)
                .expect("append");
            // No end-of-archive blocks: the archive goes on in member two.
            let bytes = builder.into_inner().expect("tar");
            let trimmed = &bytes[..512 + 512];
            std::io::Write::write_all(&mut encoder, trimmed).expect("write");
            encoder.finish().expect("gzip")
        };
        let second = tgz(&[(
            "web/values.schema.json",
            br#"{"$ref":"file:///etc/hostname"}"#,
        )]);
        let mut both = first;
        both.extend_from_slice(&second);
        assert_eq!(
            inspect(&both[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::RemoteReference,
                subchart: false
            })
        );
    }

    #[test]
    fn archives_beyond_the_bounds_are_refused() {
        let big = vec![b'x'; (MAX_FILE + 1) as usize];
        let archive = tgz(&[("web/Chart.yaml", CHART_YAML), ("web/files/big", &big)]);
        assert_eq!(
            inspect(&archive[..]),
            Err(Refusal::Archive(ArchiveProblem::FileTooLarge))
        );
        // 21 files of 5 MiB: more than 100 MiB in all.
        let five = vec![b'x'; MAX_FILE as usize];
        let names: Vec<String> = (0..21).map(|i| format!("web/files/f{i}")).collect();
        let mut files: Vec<(&str, &[u8])> = vec![("web/Chart.yaml", CHART_YAML)];
        files.extend(names.iter().map(|n| (n.as_str(), &five[..])));
        assert_eq!(
            inspect(&tgz(&files)[..]),
            Err(Refusal::Archive(ArchiveProblem::TooLarge))
        );
        let names: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("web/f{i}")).collect();
        let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b""[..])).collect();
        assert_eq!(
            inspect(&tgz(&files)[..]),
            Err(Refusal::Archive(ArchiveProblem::TooManyEntries))
        );
        // Packed subcharts nested too deep.
        let mut nested = tgz(&[("c/Chart.yaml", CHART_YAML)]);
        for _ in 0..MAX_DEPTH {
            nested = tgz(&[
                ("c/Chart.yaml", CHART_YAML),
                ("c/charts/c-0.1.0.tgz", &nested),
            ]);
        }
        assert_eq!(
            inspect(&nested[..]),
            Err(Refusal::Archive(ArchiveProblem::NestedTooDeep))
        );
        for junk in [&b""[..], b"not gzip", &tgz(&[])[..10]] {
            assert_eq!(
                inspect(junk),
                Err(Refusal::Archive(ArchiveProblem::Unreadable)),
                "{junk:?}"
            );
        }
        let broken_subchart = tgz(&[
            ("web/Chart.yaml", CHART_YAML),
            ("web/charts/x-0.1.0.tgz", b"not an archive"),
        ]);
        assert_eq!(
            inspect(&broken_subchart[..]),
            Err(Refusal::Archive(ArchiveProblem::Unreadable))
        );
    }

    #[test]
    fn a_decompression_bomb_stops_at_the_stream_budget() {
        // One file of 200 MiB of zeros compresses to ~200 KiB; its header
        // says 1 KiB (tar readers trust it), the rest is trailing junk the
        // tar reader must skip through: never more than MAX_STREAM.
        let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..200 {
            std::io::Write::write_all(&mut encoder, &zeros).expect("write");
        }
        let bomb = encoder.finish().expect("gzip");
        // All zeros is an empty tar archive: read to its end marker only.
        assert!(inspect(&bomb[..]).is_ok());
        let names: Vec<String> = (0..27).map(|i| format!("web/files/f{i}")).collect();
        let five = vec![0u8; MAX_FILE as usize];
        let mut files: Vec<(&str, &[u8])> = vec![("web/Chart.yaml", CHART_YAML)];
        // 27 × 5 MiB of contents: over MAX_DATA long before MAX_STREAM.
        files.extend(names.iter().map(|n| (n.as_str(), &five[..])));
        assert_eq!(
            inspect(&tgz(&files)[..]),
            Err(Refusal::Archive(ArchiveProblem::TooLarge))
        );
    }

    #[test]
    fn names_as_helm_gives_them() {
        assert_eq!(
            helm_name("web/templates/a.yaml").unwrap(),
            "templates/a.yaml"
        );
        assert_eq!(
            helm_name("web\\charts\\sub\\values.schema.json").unwrap(),
            "charts/sub/values.schema.json"
        );
        assert_eq!(
            helm_name("web/./x//y/../values.schema.json").unwrap(),
            "x/values.schema.json"
        );
        for bad in [
            "web//etc/passwd",
            "web/../x",
            "web/a/../../x",
            "README",
            "web",
            "web/c:/x",
            "Chart.yaml/x",
        ] {
            assert_eq!(
                helm_name(bad),
                Err(Refusal::Archive(ArchiveProblem::BadPath)),
                "{bad}"
            );
        }
        assert!(is_packed_subchart("charts/x-1.0.0.tgz"));
        assert!(is_packed_subchart("charts/a/charts/b.tgz"));
        assert!(!is_packed_subchart("files/x.tgz"));
        assert!(!is_packed_subchart("charts/x/values.yaml"));
    }

    /// Appends an entry of any type with raw `data`.
    fn raw_entry<W: std::io::Write>(
        builder: &mut tar::Builder<W>,
        kind: u8,
        name: &str,
        data: &[u8],
    ) {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::new(kind));
        header.set_path(name).expect("name");
        header.set_cksum();
        builder.append(&header, data).expect("append");
    }

    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        // "<length> <key>=<value>\n", the length counting itself.
        let body = format!(" {key}={value}\n");
        let mut length = body.len() + 1;
        while format!("{length}{body}").len() != length {
            length += 1;
        }
        format!("{length}{body}").into_bytes()
    }

    #[test]
    fn names_come_from_pax_first_then_gnu_long_names_as_in_go() {
        let remote = br#"{"$ref":"http://127.0.0.1:9/"}"#;
        // A GNU long name says one thing, a PAX path another: Go (helm)
        // names the member by the PAX path, so that is what is checked.
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        raw_entry(
            &mut builder,
            b'x',
            "PaxHeader",
            &pax_record("path", "web/values.schema.json"),
        );
        let long = format!("web/{}/notes.txt", "d".repeat(120));
        raw_entry(&mut builder, b'L', "././@LongLink", long.as_bytes());
        raw_entry(&mut builder, b'0', "web/short", remote);
        let archive = builder.into_inner().expect("tar").finish().expect("gzip");
        assert_eq!(
            inspect(&archive[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::RemoteReference,
                subchart: false
            })
        );
        // A GNU long name alone names the member too.
        let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
        let long = format!("web/charts/{}/values.schema.json", "s".repeat(120));
        raw_entry(&mut builder, b'L', "././@LongLink", long.as_bytes());
        raw_entry(&mut builder, b'0', "web/short", remote);
        let archive = builder.into_inner().expect("tar").finish().expect("gzip");
        assert_eq!(
            inspect(&archive[..]),
            Err(Refusal::Schema {
                problem: SchemaProblem::RemoteReference,
                subchart: true
            })
        );
        // A PAX size (read by Go, perhaps not by another reader), sparse
        // files and oversized extension headers are refused.
        for (kind, data) in [
            (b'x', pax_record("size", "3")),
            (b'x', pax_record("GNU.sparse.map", "0,1")),
            (b'L', vec![b'a'; (MAX_SPECIAL + 1) as usize]),
            (b'S', b"{}".to_vec()),
        ] {
            let mut builder = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::fast()));
            raw_entry(&mut builder, kind, "web/ext", &data);
            raw_entry(&mut builder, b'0', "web/values.yaml", b"a: 1");
            let archive = builder.into_inner().expect("tar").finish().expect("gzip");
            assert_eq!(
                inspect(&archive[..]),
                Err(Refusal::Archive(ArchiveProblem::Ambiguous)),
                "{}",
                kind as char
            );
        }
    }
}
