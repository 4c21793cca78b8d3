//! Whether a `values.schema.json` could make helm reach outside the chart.
//!
//! helm validates values against every schema of a chart (and of each
//! subchart) with `santhosh-tekuri/jsonschema` v6, whose loader fetches
//! what a schema names: `http(s)://` over the network (Go never proxies
//! loopback), `file://` from the operator's disk (a relative reference
//! resolves against `file:///values.schema.json`, so `sub.json` is
//! `/sub.json`), and `urn:` through helm's resolver. What triggers a load
//! (library v6.0.3, `loader.go`, `roots.go`, `objcompiler.go`):
//!
//! - `$ref`, `$dynamicRef` (2020-12) and `$recursiveRef` (2019-09) whose
//!   URL, resolved against the current base, is not a resource of the same
//!   document: anything but a fragment (`#…`) may be;
//! - `$schema` that is not one of the drafts the library embeds: it is
//!   loaded to find its draft, in any subschema, before `$id` is looked at.
//!
//! `$id` (draft-04: `id`) alone loads nothing: it only moves the base of
//! relative references, and a fragment-only reference stays inside the
//! resource it is written in. So a schema is accepted when every one of
//! those three keywords is a fragment, and every `$schema` is an embedded
//! draft. The walk visits every object of the document, keywords' values
//! included (`const`, `default`…): a key helm never reads costs a refusal,
//! never a fetch. The answer depends on the schema's text only, never on
//! what any host or file holds.

use serde_json::Value;

/// Why a schema was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaProblem {
    /// The file is not JSON as the operator reads it (helm would read it
    /// differently, or not at all).
    NotJson,
    /// A `$ref`, `$dynamicRef` or `$recursiveRef` that is not a fragment.
    RemoteReference,
    /// A `$schema` that is not an embedded draft.
    UnknownMetaSchema,
}

impl std::fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::NotJson => "is not valid JSON",
            Self::RemoteReference => {
                "has a $ref, $dynamicRef or $recursiveRef that is not a local fragment (#...)"
            }
            Self::UnknownMetaSchema => {
                "has a $schema that is not a standard JSON Schema draft (draft-04, -06, -07, 2019-09, 2020-12)"
            }
        })
    }
}

/// Keywords whose value the library resolves as a reference.
const REFERENCES: &[&str] = &["$ref", "$dynamicRef", "$recursiveRef"];

/// The meta-schemas the library embeds and recognises as drafts
/// (`draft.go` `draftFromURL`), after `http://` or `https://`.
const DRAFTS: &[&str] = &[
    "json-schema.org/schema",
    "json-schema.org/draft/2020-12/schema",
    "json-schema.org/draft/2019-09/schema",
    "json-schema.org/draft-07/schema",
    "json-schema.org/draft-06/schema",
    "json-schema.org/draft-04/schema",
];

/// Checks one `values.schema.json` as helm stores it (a leading UTF-8 BOM
/// already removed). An empty file is no schema at all (helm skips it).
pub fn check(bytes: &[u8]) -> Result<(), SchemaProblem> {
    if bytes.is_empty() {
        return Ok(());
    }
    let document: Value = serde_json::from_slice(bytes).map_err(|_| SchemaProblem::NotJson)?;
    walk(&document)
}

/// Every object of the document, iteratively (no recursion to exhaust).
fn walk(document: &Value) -> Result<(), SchemaProblem> {
    let mut pending = vec![document];
    while let Some(value) = pending.pop() {
        match value {
            Value::Object(object) => {
                for (key, value) in object {
                    if REFERENCES.contains(&key.as_str())
                        && let Value::String(reference) = value
                        && !reference.starts_with('#')
                    {
                        return Err(SchemaProblem::RemoteReference);
                    }
                    if key == "$schema"
                        && let Value::String(meta) = value
                        && !is_embedded_draft(meta)
                    {
                        return Err(SchemaProblem::UnknownMetaSchema);
                    }
                    pending.push(value);
                }
            }
            Value::Array(items) => pending.extend(items),
            _ => {}
        }
    }
    Ok(())
}

/// True for a draft URL the library answers from its own copy: `http` or
/// `https`, one of [`DRAFTS`], and at most an empty fragment.
fn is_embedded_draft(url: &str) -> bool {
    let url = url.strip_suffix('#').unwrap_or(url);
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    DRAFTS.contains(&rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(schema: serde_json::Value) -> Result<(), SchemaProblem> {
        check(schema.to_string().as_bytes())
    }

    #[test]
    fn local_references_and_embedded_drafts_are_accepted() {
        let schema = serde_json::json!({
            "$schema": "https://json-schema.org/draft-07/schema#",
            "definitions": {"port": {"type": "integer"}},
            "properties": {
                "port": {"$ref": "#/definitions/port"},
                "anchored": {"$ref": "#port"},
                "list": {"items": [{"$ref": "#/definitions/port"}]}
            }
        });
        assert_eq!(verdict(schema), Ok(()));
        for draft in [
            "http://json-schema.org/schema#",
            "https://json-schema.org/schema",
            "http://json-schema.org/draft-04/schema#",
            "http://json-schema.org/draft-06/schema",
            "https://json-schema.org/draft/2019-09/schema",
            "https://json-schema.org/draft/2020-12/schema",
        ] {
            assert_eq!(
                verdict(serde_json::json!({"$schema": draft})),
                Ok(()),
                "{draft}"
            );
        }
        // A `$id` alone loads nothing; fragments stay in its resource.
        let with_id = serde_json::json!({
            "$id": "http://127.0.0.1:9/base.json",
            "$defs": {"a": {"type": "string"}},
            "properties": {"a": {"$ref": "#/$defs/a"}}
        });
        assert_eq!(verdict(with_id), Ok(()));
        assert_eq!(check(b""), Ok(()));
    }

    #[test]
    fn every_reference_that_can_load_is_refused() {
        for reference in [
            "http://127.0.0.1:8080/x.json",
            "http://localhost/x.json#/a",
            "https://example.com/schema.json",
            "file:///etc/hostname",
            "file:///nonexistent",
            "file://./sub.json",
            "sub.json",
            "sub.json#/definitions/a",
            "/etc/passwd",
            "urn:example:x",
            " #/leading-space",
            "",
        ] {
            for keyword in ["$ref", "$dynamicRef", "$recursiveRef"] {
                let nested =
                    serde_json::json!({"properties": {"a": {"items": {keyword: reference}}}});
                assert_eq!(
                    verdict(nested),
                    Err(SchemaProblem::RemoteReference),
                    "{keyword}: {reference:?}"
                );
            }
        }
    }

    #[test]
    fn meta_schemas_other_than_the_embedded_drafts_are_refused() {
        for meta in [
            "http://127.0.0.1:9/meta",
            "file:///etc/hostname",
            "https://json-schema.org/draft/2099/schema",
            "http://json-schema.org/draft-07/schema#/definitions",
            "https://json-schema.org/draft/2020-12/meta/core",
            "json-schema.org/draft-07/schema",
            "HTTP://json-schema.org/draft-07/schema",
            "",
        ] {
            // Anywhere: the library reads `$schema` in every subschema.
            let deep = serde_json::json!({"properties": {"a": {"$schema": meta}}});
            assert_eq!(
                verdict(deep),
                Err(SchemaProblem::UnknownMetaSchema),
                "{meta:?}"
            );
        }
    }

    #[test]
    fn keys_the_library_never_reads_are_refused_all_the_same() {
        // Inside `default`, `const` or an unknown keyword: refusing costs a
        // chart, missing one would cost a fetch.
        let schema = serde_json::json!({"default": {"$ref": "http://x/y"}});
        assert_eq!(verdict(schema), Err(SchemaProblem::RemoteReference));
        let schema = serde_json::json!({"x-custom": [{"$schema": "http://x/"}]});
        assert_eq!(verdict(schema), Err(SchemaProblem::UnknownMetaSchema));
        // A non-string `$ref` is not loaded (the library ignores it).
        assert_eq!(verdict(serde_json::json!({"$ref": 5})), Ok(()));
    }

    #[test]
    fn unreadable_json_is_refused() {
        for bad in [
            &b"{"[..],
            b"{\"a\": 1} trailing",
            b"{\"$ref\": \"\xff\"}",
            b"\xef\xbb\xbf{}",
        ] {
            assert_eq!(check(bad), Err(SchemaProblem::NotJson), "{bad:?}");
        }
        // Escapes are decoded before the keyword is compared.
        assert_eq!(
            check(br#"{"\u0024ref": "http://x/"}"#),
            Err(SchemaProblem::RemoteReference)
        );
        // Deeper than the parser goes: refused, not overflowed.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(check(deep.as_bytes()), Err(SchemaProblem::NotJson));
    }
}
