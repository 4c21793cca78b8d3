//! Which chart version a request means, chosen as helm chooses it (Helm
//! 3.22 and 4.3, `pkg/registry/util.go` `GetTagMatchingVersionOrConstraint`
//! and `pkg/repo/index.go` `IndexFile.Get`):
//!
//! - no version: the highest release (`*`, which no pre-release matches);
//! - a version equal to an available one: that one;
//! - else a constraint, matched from the highest version down.
//!
//! Constraints are the semver ranges `ChartVersion` accepts, read as helm's
//! Masterminds library reads them: a bare version is exact (`1.2.3`) or a
//! tilde range when parts are missing (`1.2` is `1.2.x`), not Cargo's caret.
//! An OCI version that is itself a version (`1.2.3`, `v1.2`) is taken as the
//! tag without listing tags, as helm does; OCI tags spell `+` as `_`.

use semver::{Comparator, Op, Version, VersionReq};

use crate::names::ChartVersion;

/// What to ask an OCI registry for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciTarget {
    /// This tag, without listing the repository's tags.
    Tag(String),
    /// The best of the repository's tags for this request (`None`: latest).
    Choose(Option<String>),
}

/// The OCI request for `version`: an exact version is a tag as is (`+`
/// written `_`); anything else needs the tag list.
pub fn oci_target(version: Option<&ChartVersion>) -> OciTarget {
    match version {
        Some(version) if loose_version(version.as_str()).is_some() => {
            OciTarget::Tag(version.as_str().replace('+', "_"))
        }
        Some(version) => OciTarget::Choose(Some(version.as_str().to_owned())),
        None => OciTarget::Choose(None),
    }
}

/// The tag to pull among `tags` (as a registry lists them): helm keeps the
/// tags that are strict semantic versions (`_` read as `+`), highest first,
/// then takes an exact match, else the first one the constraint admits.
pub fn choose_tag(tags: &[String], wanted: Option<&str>) -> Option<String> {
    let mut versions: Vec<Version> = tags
        .iter()
        .filter_map(|tag| Version::parse(&tag.replace('_', "+")).ok())
        .collect();
    versions.sort_by(|a, b| b.cmp_precedence(a).then_with(|| b.cmp(a)));
    let candidates: Vec<String> = versions.iter().map(Version::to_string).collect();
    let chosen = choose(&candidates, wanted)?;
    Some(chosen.replace('+', "_"))
}

/// The version to install among `available` (a repository index's
/// versions of one chart, in any order): exact string match first, else
/// the highest version the constraint (`*` without one) admits.
pub fn choose_version(available: &[String], wanted: Option<&str>) -> Option<String> {
    let mut sorted: Vec<(Option<Version>, &String)> =
        available.iter().map(|v| (loose_version(v), v)).collect();
    // Highest first; what does not parse goes last (and never matches a
    // constraint), as in helm's index sorting.
    sorted.sort_by(|(a, _), (b, _)| match (a, b) {
        (Some(a), Some(b)) => b.cmp_precedence(a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    let candidates: Vec<String> = sorted.into_iter().map(|(_, v)| v.clone()).collect();
    choose(&candidates, wanted)
}

/// `candidates` highest first: an exact match of `wanted`, else the first
/// one it admits as a constraint.
fn choose(candidates: &[String], wanted: Option<&str>) -> Option<String> {
    if let Some(wanted) = wanted
        && let Some(exact) = candidates.iter().find(|c| c.as_str() == wanted)
    {
        return Some(exact.clone());
    }
    let constraint = match wanted {
        None => VersionReq::STAR,
        Some(wanted) => helm_constraint(wanted)?,
    };
    candidates
        .iter()
        .find(|candidate| loose_version(candidate).is_some_and(|v| constraint.matches(&v)))
        .cloned()
}

/// A constraint as helm's Masterminds semver reads it: comparators without
/// an operator are exact, or tilde ranges when parts are missing; a `v`
/// before a version is allowed.
fn helm_constraint(text: &str) -> Option<VersionReq> {
    let mut comparators = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let bare = part.starts_with(|c: char| c.is_ascii_digit() || c == 'v');
        let cleaned = match part.strip_prefix('v') {
            Some(rest) if bare => rest,
            _ => part,
        };
        let comparator = Comparator::parse(cleaned).ok()?;
        let comparator = match comparator.op {
            Op::Caret if bare => Comparator {
                op: if comparator.minor.is_some() && comparator.patch.is_some() {
                    Op::Exact
                } else {
                    Op::Tilde
                },
                ..comparator
            },
            _ => comparator,
        };
        comparators.push(comparator);
    }
    Some(VersionReq { comparators })
}

/// A version as Masterminds' `NewVersion` reads it: an optional `v`, one
/// to three numbers (missing ones are 0), then an optional pre-release and
/// build.
pub fn loose_version(text: &str) -> Option<Version> {
    let plain = text.strip_prefix('v').unwrap_or(text);
    let (core, rest) = match plain.find(['-', '+']) {
        Some(at) => plain.split_at(at),
        None => (plain, ""),
    };
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.is_empty()
        || numbers.len() > 3
        || numbers
            .iter()
            .any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = numbers.join(".");
    for _ in numbers.len()..3 {
        full.push_str(".0");
    }
    Version::parse(&format!("{full}{rest}")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn an_exact_oci_version_is_the_tag_itself() {
        let version = |v: &str| ChartVersion::parse(v).unwrap();
        assert_eq!(
            oci_target(Some(&version("1.2.3+build.5"))),
            OciTarget::Tag("1.2.3_build.5".into())
        );
        assert_eq!(
            oci_target(Some(&version("v1.2.3"))),
            OciTarget::Tag("v1.2.3".into())
        );
        assert_eq!(
            oci_target(Some(&version("^1.2"))),
            OciTarget::Choose(Some("^1.2".into()))
        );
        assert_eq!(oci_target(None), OciTarget::Choose(None));
    }

    #[test]
    fn latest_tag_skips_pre_releases_and_non_versions() {
        let tags = strings(&[
            "0.1.0",
            "latest",
            "0.10.0",
            "0.9.1",
            "1.0.0-rc.1",
            "v2.0.0",
            "0.10.0_build.7",
        ]);
        // `v2.0.0` is not a strict version; `_` stands for `+`.
        assert_eq!(choose_tag(&tags, None).as_deref(), Some("0.10.0_build.7"));
        assert_eq!(choose_tag(&tags, Some("~0.9")).as_deref(), Some("0.9.1"));
        assert_eq!(choose_tag(&tags, Some("^0.1")).as_deref(), Some("0.1.0"));
        assert_eq!(
            choose_tag(&tags, Some(">=1.0.0-rc.0")).as_deref(),
            Some("1.0.0-rc.1")
        );
        assert_eq!(choose_tag(&tags, Some("^3")), None);
        assert_eq!(choose_tag(&[], None), None);
    }

    #[test]
    fn repository_versions_exact_first_then_the_highest_match() {
        let available = strings(&["0.1.0", "0.2.0", "1.0.0", "1.1.0-beta.1", "garbage"]);
        assert_eq!(choose_version(&available, None).as_deref(), Some("1.0.0"));
        assert_eq!(
            choose_version(&available, Some("0.2.0")).as_deref(),
            Some("0.2.0")
        );
        assert_eq!(
            choose_version(&available, Some("^0.1")).as_deref(),
            Some("0.1.0")
        );
        assert_eq!(
            choose_version(&available, Some("1.1.0-beta.1")).as_deref(),
            Some("1.1.0-beta.1")
        );
        // An exact version that is not there matches nothing (helm's `=`),
        // not the next caret-compatible one.
        assert_eq!(choose_version(&available, Some("0.1.5")), None);
        // Missing parts: a tilde range, as in helm (`0` is 0.x).
        assert_eq!(
            choose_version(&available, Some("0")).as_deref(),
            Some("0.2.0")
        );
        assert_eq!(
            choose_version(&available, Some(">=0.1.0, <1.0.0")).as_deref(),
            Some("0.2.0")
        );
        assert_eq!(
            choose_version(&available, Some("v1.0")).as_deref(),
            Some("1.0.0")
        );
        assert_eq!(choose_version(&strings(&["garbage"]), None), None);
    }

    #[test]
    fn loose_versions_as_helm_reads_them() {
        assert_eq!(loose_version("1.2").unwrap().to_string(), "1.2.0");
        assert_eq!(loose_version("v3").unwrap().to_string(), "3.0.0");
        assert_eq!(
            loose_version("1.2.3-rc.1+b").unwrap().to_string(),
            "1.2.3-rc.1+b"
        );
        for bad in ["", "x", "1.2.3.4", "1..2", "^1.2", "1.2.x", ">=1"] {
            assert!(loose_version(bad).is_none(), "{bad}");
        }
    }
}
