//! Edits of the shared tunnel's configuration document, as pure functions:
//! the rules of hostnames we own are made exactly what our route records
//! want (replaced in place, added before the catch-all, or dropped); every
//! other rule (someone else's) stays untouched, in place; every other field
//! of the document (`warp-routing`, `originRequest`, unknown ones) is kept;
//! the catch-all stays last.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::config::ExposureBackend;
use crate::exposure::store::{RouteRecord, RouteState};
use crate::model::exposure::RouteRule;

/// The catch-all a document gets when it has none.
pub(crate) const CATCH_ALL_SERVICE: &str = "http_status:404";

/// One rule of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub(crate) hostname: String,
    pub(crate) service: String,
    pub(crate) path: Option<String>,
}

impl Rule {
    fn to_value(&self) -> Value {
        let mut rule = json!({ "hostname": self.hostname, "service": self.service });
        if let Some(path) = &self.path {
            rule["path"] = Value::String(path.clone());
        }
        rule
    }

    fn matches(&self, rule: &Value) -> bool {
        rule["service"].as_str() == Some(self.service.as_str())
            && rule["path"].as_str() == self.path.as_deref()
    }
}

/// What we want for a hostname we own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Want {
    Present(Rule),
    Absent,
}

/// The edited document, and whether it differs from the one read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Edited {
    pub(crate) document: Value,
    pub(crate) changed: bool,
    /// The hostnames of ours with a rule now.
    pub(crate) present: BTreeSet<String>,
}

fn hostname_of(rule: &Value) -> Option<String> {
    rule["hostname"]
        .as_str()
        .filter(|h| !h.is_empty() && *h != "*")
        .map(str::to_ascii_lowercase)
}

fn is_catch_all(rule: &Value) -> bool {
    hostname_of(rule).is_none() && rule.get("path").is_none_or(Value::is_null)
}

/// Applies `wants` (keyed by lower-case hostname) to `current` (`None`: a
/// tunnel never configured).
pub(crate) fn edit(current: Option<&Value>, wants: &BTreeMap<String, Want>) -> Edited {
    let mut document = match current {
        Some(Value::Object(map)) => map.clone(),
        _ => Map::new(),
    };
    let mut rules: Vec<Value> = document
        .get("ingress")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let catch_all = match rules.last() {
        Some(last) if is_catch_all(last) => rules.pop(),
        _ => None,
    }
    .unwrap_or_else(|| json!({ "service": CATCH_ALL_SERVICE }));
    let mut placed = BTreeSet::new();
    let mut edited = Vec::with_capacity(rules.len() + wants.len() + 1);
    for rule in rules {
        let Some(host) = hostname_of(&rule) else {
            edited.push(rule);
            continue;
        };
        match wants.get(&host) {
            // Not ours: untouched, in place.
            None => edited.push(rule),
            Some(Want::Absent) => {}
            Some(Want::Present(ours)) => {
                // Ours: the first rule of the hostname becomes exactly ours,
                // further ones go.
                if placed.insert(host) {
                    edited.push(ours.to_value());
                }
            }
        }
    }
    for (host, want) in wants {
        if let Want::Present(ours) = want
            && placed.insert(host.clone())
        {
            edited.push(ours.to_value());
        }
    }
    edited.push(catch_all);
    document.insert("ingress".to_owned(), Value::Array(edited));
    let document = Value::Object(document);
    let changed = current != Some(&document);
    Edited {
        document,
        changed,
        present: placed,
    }
}

/// A rule for `hostname` that is not `ours` (someone else routes it).
pub(crate) fn foreign_rule(current: Option<&Value>, hostname: &str, ours: &Rule) -> bool {
    rules_of(current)
        .iter()
        .any(|rule| hostname_of(rule).as_deref() == Some(hostname) && !ours.matches(rule))
}

fn rules_of(current: Option<&Value>) -> Vec<Value> {
    current
        .and_then(|doc| doc.get("ingress"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The rules as the platform lists them: hostname (absent on the
/// catch-all), service and path, in order.
pub(crate) fn listed(current: Option<&Value>) -> Vec<RouteRule> {
    rules_of(current)
        .iter()
        .map(|rule| RouteRule {
            hostname: rule["hostname"].as_str().map(str::to_owned),
            service: rule["service"].as_str().unwrap_or_default().to_owned(),
            path: rule["path"].as_str().map(str::to_owned),
        })
        .collect()
}

/// Our rule for a record.
pub(crate) fn rule_of(record: &RouteRecord) -> Rule {
    Rule {
        hostname: record.hostname.clone(),
        service: record.service_url.clone(),
        path: record.path.clone(),
    }
}

/// What the records want of the document: a rule for every active route of
/// this backend, none for one being removed (also when it moves to another
/// backend). A pending claim (its hostname may be someone else's) and the
/// routes of other backends want nothing either way: their hostnames'
/// rules are not ours to touch.
pub(crate) fn wants(records: &[RouteRecord]) -> BTreeMap<String, Want> {
    records
        .iter()
        .filter(|record| record.backend == ExposureBackend::Cloudflare)
        .filter_map(|record| {
            let want = match record.state {
                RouteState::Active => Want::Present(rule_of(record)),
                RouteState::Removing => Want::Absent,
                RouteState::Pending => return None,
            };
            Some((record.hostname.to_ascii_lowercase(), want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::record::test_record as record;

    fn doc() -> Value {
        json!({
            "ingress": [
                {"hostname": "foreign.paas.test", "service": "http://foreign.example:80"},
                {"hostname": "a.apps.example.com", "service": "http://old:80"},
                {"hostname": "other.paas.test", "service": "http://other:80", "originRequest": {"noTLSVerify": true}},
                {"service": "http_status:404"}
            ],
            "warp-routing": {"enabled": false},
            "originRequest": {"connectTimeout": 10}
        })
    }

    fn present(host: &str, service: &str) -> (String, Want) {
        (
            host.to_owned(),
            Want::Present(Rule {
                hostname: host.to_owned(),
                service: service.to_owned(),
                path: None,
            }),
        )
    }

    fn hosts(document: &Value) -> Vec<Option<String>> {
        document["ingress"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["hostname"].as_str().map(str::to_owned))
            .collect()
    }

    #[test]
    fn ours_replaced_in_place_new_before_the_catch_all_foreign_untouched() {
        let wants = BTreeMap::from([
            present("a.apps.example.com", "http://new:80"),
            present("b.apps.example.com", "http://b:8080"),
        ]);
        let current = doc();
        let edited = edit(Some(&current), &wants);
        assert!(edited.changed);
        let rules = edited.document["ingress"].as_array().unwrap();
        assert_eq!(
            hosts(&edited.document),
            [
                Some("foreign.paas.test".into()),
                Some("a.apps.example.com".into()),
                Some("other.paas.test".into()),
                Some("b.apps.example.com".into()),
                None
            ]
        );
        assert_eq!(rules[0], current["ingress"][0]);
        assert_eq!(rules[1]["service"], "http://new:80");
        assert_eq!(rules[2], current["ingress"][2], "foreign rule kept whole");
        assert_eq!(rules[4], json!({"service": "http_status:404"}));
        assert_eq!(edited.document["warp-routing"], json!({"enabled": false}));
        assert_eq!(
            edited.document["originRequest"],
            json!({"connectTimeout": 10})
        );
        assert_eq!(edited.present.len(), 2);
        // Applying the same again changes nothing.
        let again = edit(Some(&edited.document), &wants);
        assert!(!again.changed);
        assert_eq!(again.document, edited.document);
    }

    #[test]
    fn absent_drops_every_rule_of_the_hostname_and_nothing_else() {
        let mut current = doc();
        current["ingress"].as_array_mut().unwrap().insert(
            2,
            json!({"hostname": "A.apps.example.com", "path": "^/x", "service": "http://x:80"}),
        );
        let wants = BTreeMap::from([("a.apps.example.com".to_owned(), Want::Absent)]);
        let edited = edit(Some(&current), &wants);
        assert_eq!(
            hosts(&edited.document),
            [
                Some("foreign.paas.test".into()),
                Some("other.paas.test".into()),
                None
            ]
        );
        // Absent and not there: unchanged.
        let again = edit(Some(&edited.document), &wants);
        assert!(!again.changed);
    }

    #[test]
    fn a_document_without_rules_or_catch_all_gets_one() {
        let wants = BTreeMap::from([present("a.apps.example.com", "http://a:80")]);
        for current in [
            None,
            Some(json!({})),
            Some(json!({"ingress": [{"hostname": "f.x", "service": "http://f:1"}]})),
        ] {
            let edited = edit(current.as_ref(), &wants);
            let rules = edited.document["ingress"].as_array().unwrap();
            assert_eq!(
                rules.last().unwrap(),
                &json!({"service": "http_status:404"})
            );
            assert!(rules.iter().any(|r| r["hostname"] == "a.apps.example.com"));
        }
        // A catch-all with another service is kept as it is.
        let custom = json!({"ingress": [{"service": "http_status:503"}]});
        let edited = edit(Some(&custom), &wants);
        assert_eq!(
            edited.document["ingress"][1],
            json!({"service": "http_status:503"})
        );
    }

    #[test]
    fn foreign_rules_and_listing() {
        let current = doc();
        let ours = Rule {
            hostname: "a.apps.example.com".into(),
            service: "http://old:80".into(),
            path: None,
        };
        assert!(!foreign_rule(Some(&current), "a.apps.example.com", &ours));
        let different = Rule {
            service: "http://new:80".into(),
            ..ours.clone()
        };
        assert!(foreign_rule(
            Some(&current),
            "a.apps.example.com",
            &different
        ));
        assert!(!foreign_rule(
            Some(&current),
            "z.apps.example.com",
            &different
        ));
        let listed = listed(Some(&current));
        assert_eq!(listed.len(), 4);
        assert_eq!(listed[3].hostname, None);
        assert_eq!(listed[3].service, "http_status:404");
    }

    #[test]
    fn paths_are_written_only_when_set() {
        let rule = Rule {
            hostname: "a.x".into(),
            service: "http://a:80".into(),
            path: Some("^/api".into()),
        };
        assert_eq!(rule.to_value()["path"], "^/api");
        let plain = Rule { path: None, ..rule };
        assert!(plain.to_value().get("path").is_none());
    }

    #[test]
    fn records_want_rules_only_while_active_on_this_backend() {
        let wants = wants(&[
            record("a", ExposureBackend::Cloudflare, RouteState::Active),
            record("b", ExposureBackend::Cloudflare, RouteState::Removing),
            record("c", ExposureBackend::Ingress, RouteState::Active),
            record("d", ExposureBackend::Cloudflare, RouteState::Pending),
        ]);
        assert!(!wants.contains_key("d.apps.example.com"));
        assert!(
            matches!(&wants["a.apps.example.com"], Want::Present(rule) if rule.service == "http://a.ns.svc.cluster.local:80")
        );
        assert_eq!(wants["b.apps.example.com"], Want::Absent);
        assert!(!wants.contains_key("c.apps.example.com"));
    }
}
