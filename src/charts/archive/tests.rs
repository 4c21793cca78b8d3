//! Unit tests of the archive inspection: bounds, layout, packed subcharts.

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
fn raw_entry<W: std::io::Write>(builder: &mut tar::Builder<W>, kind: u8, name: &str, data: &[u8]) {
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
