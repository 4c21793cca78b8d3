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
pub(crate) mod tests;
