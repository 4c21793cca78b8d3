//! Unit tests of record decoding: summaries, bounds, corrupt and forged records.

use super::*;

const RECORD: &str = r#"{
    "name": "svc-1a2b3c4d", "namespace": "paas-ws-3f9a0c1d", "version": 3,
    "info": {"first_deployed": "2026-11-01T10:00:00.123456789+02:00",
             "last_deployed": "2026-11-02T10:00:00.5+02:00", "deleted": "",
             "description": "Upgrade complete", "status": "deployed", "notes": "hi"},
    "chart": {"metadata": {"name": "my-web-app", "version": "1.2.3-rc.1", "appVersion": "2.0"},
              "templates": [], "values": {"a": 1}},
    "config": {"password": "s3cret", "nested": {"n": 1}},
    "manifest": "---\n", "hooks": null, "labels": null, "apply_method": "ssa"
}"#;

#[test]
fn records_decode_to_summaries() {
    let release: HelmRelease = serde_json::from_str(RECORD).unwrap();
    let summary = release.summary();
    assert_eq!(summary.version, 3);
    assert_eq!(summary.status(), ReleaseStatus::Deployed);
    assert_eq!(
        (
            &*summary.chart,
            &*summary.chart_version,
            &*summary.app_version
        ),
        ("my-web-app", "1.2.3-rc.1", "2.0")
    );
    assert_eq!(&*summary.updated, "2026-11-02T08:00:00.5Z");
    assert_eq!(&*summary.description, "Upgrade complete");
    assert_eq!(release.config.unwrap()["password"], "s3cret");
}

fn gzip(json: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json).unwrap();
    gz.finish().unwrap()
}

fn encode(json: &[u8]) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .encode(gzip(json))
        .into_bytes()
}

#[test]
fn decodes_gzipped_and_plain_records() {
    let json = br#"{"name":"a","version":2,"info":{"status":"superseded"}}"#;
    assert_eq!(decode_record("r", &encode(json)).unwrap().version, 2);
    let plain = base64::engine::general_purpose::STANDARD
        .encode(json)
        .into_bytes();
    assert_eq!(decode_record("r", &plain).unwrap().name, "a");
    let (summary, ()) = decode_summary("r", &plain, |_| ()).unwrap();
    assert_eq!((&*summary.name, summary.version), ("a", 2));
    // Go's reader reads every gzip member: so do we.
    let (first, second) = r#"{"name":"a","version":2,"#.split_at(10);
    let mut members = gzip(first.as_bytes());
    members.extend(gzip(
        format!(r#"{second}"info":{{"status":"deployed"}}}}"#).as_bytes(),
    ));
    let two = base64::engine::general_purpose::STANDARD
        .encode(members)
        .into_bytes();
    assert_eq!(
        decode_record("r", &two).unwrap().status(),
        ReleaseStatus::Deployed
    );
}

#[test]
fn summaries_keep_only_what_reads_show() {
    let release: HelmRelease = serde_json::from_str(RECORD).unwrap();
    let (summary, manifest) =
        decode_summary("r", &encode(RECORD.as_bytes()), str::to_owned).unwrap();
    assert_eq!(summary, release.summary());
    assert_eq!(manifest, "---\n");
    // A summary made whole again (a history for writes) says the same.
    let bare = HelmRelease::from(summary.clone());
    assert_eq!(
        (bare.summary(), bare.manifest.as_str()),
        (summary.clone(), "")
    );
    assert_eq!(bare.updated_at(), release.updated_at());
    // Fields it does not read may be anything (even not what Helm
    // writes); a missing manifest is an empty one.
    let json = serde_json::json!({"name": "a", "version": 3, "info": {"status": "superseded"},
        "chart": {"metadata": {"name": "web", "version": "0.1.0"}, "values": {"big": "x"},
                  "templates": [{"name": "t", "data": "AAAA"}], "files": null},
        "config": {"password": "s3cret"}, "hooks": [{"manifest": "x"}], "labels": 7});
    let (summary, seen) =
        decode_summary("r", &encode(json.to_string().as_bytes()), |m| m.len()).unwrap();
    assert_eq!((summary.version, &*summary.chart), (3, "web"));
    assert_eq!(seen, 0);
    assert_eq!(summary.status(), ReleaseStatus::Superseded);
    // name and version are what makes a record genuine: both required.
    let nameless = encode(br#"{"version": 1, "manifest": "x"}"#);
    assert!(matches!(
        decode_summary("r", &nameless, |_| ()),
        Err(RecordError::Corrupt { .. })
    ));
    assert!(matches!(
        decode_record("r", &nameless),
        Err(RecordError::Corrupt { .. })
    ));
}

/// A record like Helm's with this much chart payload (files, which
/// neither decoder keeps) and this manifest.
fn record_with(files: usize, manifest: usize) -> Vec<u8> {
    let json = serde_json::json!({
        "name": "a", "version": 1, "info": {"status": "deployed"},
        "chart": {"metadata": {"name": "web"}, "files": [{"name": "f", "data": "x".repeat(files)}]},
        "manifest": "m".repeat(manifest), "hooks": [],
    });
    encode(json.to_string().as_bytes())
}

#[test]
fn caps_bound_inflation_and_kept_manifests_not_chart_payloads() {
    // Chart payload is skipped as it streams: a record whose JSON is
    // larger than any manifest we keep still decodes, whole and as a
    // summary.
    let big_chart = record_with(MAX_MANIFEST + (MAX_MANIFEST / 2), 1000);
    assert_eq!(decode_record("r", &big_chart).unwrap().manifest.len(), 1000);
    assert_eq!(
        decode_summary("r", &big_chart, |m| m.len()).unwrap().1,
        1000
    );
    // A manifest over the cap is refused by both decoders.
    let big_manifest = record_with(0, MAX_MANIFEST + 1);
    for result in [
        decode_record("r", &big_manifest).map(drop),
        decode_summary("r", &big_manifest, |_| ()).map(drop),
    ] {
        assert!(
            matches!(result, Err(RecordError::TooLarge { .. })),
            "{result:?}"
        );
    }
    // A record larger than helm would load whole is still summarised
    // (reads answer), but not decoded whole (writes refuse it).
    let beyond_whole = record_with(MAX_RECORD as usize + 1, 10);
    assert_eq!(
        decode_summary("r", &beyond_whole, |m| m.len()).unwrap().1,
        10
    );
    for result in [
        decode_record("r", &beyond_whole).map(drop),
        decode_payload("r", &beyond_whole).map(drop),
        decode_loadable_summary("r", &beyond_whole).map(drop),
    ] {
        assert!(
            matches!(result, Err(RecordError::TooLarge { .. })),
            "{result:?}"
        );
    }
    // A small gzip that inflates past the limit (a bomb): refused
    // wherever the excess is, without holding it.
    let bomb = record_with(MAX_INFLATED as usize, 0);
    assert!(bomb.len() < MAX_ENCODED);
    assert!(matches!(
        decode_summary("r", &bomb, |_| ()),
        Err(RecordError::TooLarge { .. })
    ));
    let spaces = encode(&vec![b' '; MAX_INFLATED as usize + 10]);
    assert!(matches!(
        decode_summary("r", &spaces, |_| ()),
        Err(RecordError::TooLarge { .. })
    ));
    assert!(matches!(
        decode_record("r", &spaces),
        Err(RecordError::TooLarge { .. })
    ));
}

#[test]
fn rejects_corrupt_and_oversized_records() {
    assert!(matches!(
        decode_record("r", b"%%%"),
        Err(RecordError::Corrupt { .. })
    ));
    assert!(matches!(
        decode_record("r", &encode(b"not json")),
        Err(RecordError::Corrupt { .. })
    ));
    assert!(matches!(
        decode_summary(
            "r",
            &encode(br#"{"name":"a","version":1} trailing"#),
            |_| ()
        ),
        Err(RecordError::Corrupt { .. })
    ));
    let mut truncated = gzip(RECORD.as_bytes());
    truncated.truncate(truncated.len() / 2);
    let truncated = base64::engine::general_purpose::STANDARD
        .encode(truncated)
        .into_bytes();
    assert!(matches!(
        decode_summary("r", &truncated, |_| ()),
        Err(RecordError::Corrupt { .. })
    ));
    let huge = vec![b'A'; MAX_ENCODED + 4];
    assert!(matches!(
        decode_record("r", &huge),
        Err(RecordError::TooLarge { .. })
    ));
}

#[test]
fn only_old_pending_revisions_are_stale() {
    let record = |status: &str, at: &str| -> HelmRelease {
        serde_json::from_value(serde_json::json!({
            "name": "a", "version": 2, "info": {"status": status, "last_deployed": at}
        }))
        .unwrap()
    };
    let old = "2020-01-01T00:00:00Z";
    let now = jiff::Timestamp::now().to_string();
    let limit = Duration::from_secs(60);
    for (release, stale) in [
        (record("pending-upgrade", old), true),
        (record("pending-rollback", old), true),
        (record("pending-upgrade", &now), false),
        (record("deployed", old), false),
    ] {
        assert_eq!(release.is_stale_pending(limit), stale);
        assert_eq!(release.summary().is_stale_pending(limit), stale);
    }
}

#[test]
fn sparse_records_decode() {
    let release: HelmRelease = serde_json::from_str(
        r#"{"name": "x", "version": 1, "info": {"status": "pending-install"}}"#,
    )
    .unwrap();
    let summary = release.summary();
    assert_eq!(summary.status(), ReleaseStatus::PendingInstall);
    assert_eq!((&*summary.updated, &*summary.description), ("", ""));
    assert_eq!(release.config, None);
    let nulls =
        encode(br#"{"name": "x", "version": 1, "info": null, "chart": null, "manifest": null}"#);
    let (summary, seen) = decode_summary("r", &nulls, |m| m.to_owned()).unwrap();
    assert_eq!(
        (&*summary.status, &*summary.chart, seen.as_str()),
        ("", "", "")
    );
}
