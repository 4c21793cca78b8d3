//! Reconciliation's decisions, as pure functions of what was read: the
//! route records, which releases are gone, which backends are built, and
//! the claims (DNS records of ours) the configured backend holds.
//! [`super::execute`] carries them out.

use std::collections::BTreeSet;

use crate::config::ExposureBackend;
use crate::exposure::backend::Claim;
use crate::exposure::store::{ReleaseRef, RouteRecord, RouteState};

/// What the records are judged against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Facts<'a> {
    /// The backend new routes are made with.
    pub(crate) configured: ExposureBackend,
    /// Every backend built; a route of another cannot be taken out of it.
    pub(crate) available: &'a [ExposureBackend],
    /// Releases known to be gone (their namespace too counts).
    pub(crate) gone: &'a BTreeSet<ReleaseRef>,
}

/// What reconciliation does with one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Being removed: taken out of its backend, then its record deleted.
    Finish(RouteRecord),
    /// Its release is gone: marked removing (a pending claim's record is
    /// deleted at once, nothing of it was put in place), then finished.
    Retire(RouteRecord),
    /// Made with another backend than the configured one: taken out of the
    /// old one (when `take_out`: its settings are still there), then a
    /// pending claim on the configured one, checked and put in place.
    Move { record: RouteRecord, take_out: bool },
    /// A pending claim: its hostname checked, then put in place.
    Check(RouteRecord),
    /// Active on the configured backend: put in place again if it is not.
    Repair(RouteRecord),
}

/// One action per record.
pub(crate) fn plan(records: &[RouteRecord], facts: Facts<'_>) -> Vec<Action> {
    records.iter().map(|record| action(record, facts)).collect()
}

fn action(record: &RouteRecord, facts: Facts<'_>) -> Action {
    let record = record.clone();
    if record.state == RouteState::Removing {
        return Action::Finish(record);
    }
    if record
        .owner
        .as_ref()
        .is_some_and(|o| facts.gone.contains(o))
    {
        return Action::Retire(record);
    }
    if record.backend != facts.configured {
        let take_out = facts.available.contains(&record.backend);
        return Action::Move { record, take_out };
    }
    match record.state {
        RouteState::Pending => Action::Check(record),
        RouteState::Active | RouteState::Removing => Action::Repair(record),
    }
}

/// How an active route is repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Repair {
    /// Applied, with the claim it records: nothing to do.
    Done,
    /// In place already: only recorded as applied, with this claim.
    Record(String),
    /// Put in place through its backend.
    Apply,
    /// Cannot be told now (the claims could not be listed): next time.
    Unknown,
}

/// The repair of `record`, given its backend's claims (`None`: they could
/// not be listed). A backend without claims (Ingress) applies every time.
pub(crate) fn repair(record: &RouteRecord, claims: Option<&[Claim]>) -> Repair {
    let Some(claims) = claims else {
        return Repair::Unknown;
    };
    let Some(claim) = claims
        .iter()
        .find(|c| c.in_place && c.hostname == record.hostname)
    else {
        return Repair::Apply;
    };
    if record.applied && record.dns_record_id.as_deref() == Some(claim.id.as_str()) {
        Repair::Done
    } else {
        Repair::Record(claim.id.clone())
    }
}

/// The claims of ours no record names: deleted (each checked again just
/// before, as a route made since the records were read is no orphan).
pub(crate) fn orphans(claims: &[Claim], records: &[RouteRecord]) -> Vec<Claim> {
    let named: BTreeSet<&str> = records.iter().map(|r| r.hostname.as_str()).collect();
    claims
        .iter()
        .filter(|c| c.orphanable && !named.contains(c.hostname.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::record::test_record as record;
    use crate::exposure::store::RouteKind;
    use ExposureBackend::{Cloudflare, Ingress};
    use RouteState::{Active, Pending, Removing};

    fn claim(sub: &str, id: &str, in_place: bool, orphanable: bool) -> Claim {
        Claim {
            id: id.into(),
            hostname: format!("{sub}.apps.example.com"),
            in_place,
            orphanable,
        }
    }

    /// The action for every kind of record, on each side of a switch.
    #[test]
    fn every_record_gets_its_action() {
        let gone = BTreeSet::from([ReleaseRef {
            namespace: "ns".into(),
            name: "gone".into(),
        }]);
        let both = [Cloudflare, Ingress];
        let facts = Facts {
            configured: Cloudflare,
            available: &both,
            gone: &gone,
        };
        let manual = RouteRecord {
            owner: None,
            kind: RouteKind::Manual,
            ..record("manual", Cloudflare, Active)
        };
        let table = [
            (record("a", Cloudflare, Active), "repair"),
            (record("a", Cloudflare, Pending), "check"),
            (record("a", Cloudflare, Removing), "finish"),
            (record("a", Ingress, Removing), "finish"),
            (record("gone", Cloudflare, Active), "retire"),
            (record("gone", Cloudflare, Pending), "retire"),
            // Already being removed: finished, not retired again.
            (record("gone", Cloudflare, Removing), "finish"),
            // Gone releases' routes are removed where they are, not moved.
            (record("gone", Ingress, Active), "retire"),
            (record("a", Ingress, Active), "move out"),
            (record("a", Ingress, Pending), "move out"),
            // A route of no release is never retired.
            (manual, "repair"),
        ];
        for (record, expected) in table {
            let got = match action(&record, facts) {
                Action::Finish(_) => "finish",
                Action::Retire(_) => "retire",
                Action::Move { take_out: true, .. } => "move out",
                Action::Move {
                    take_out: false, ..
                } => "move",
                Action::Check(_) => "check",
                Action::Repair(_) => "repair",
            };
            assert_eq!(got, expected, "{record:?}");
        }
    }

    #[test]
    fn a_route_of_a_backend_not_built_moves_without_taking_out() {
        let gone = BTreeSet::new();
        let facts = Facts {
            configured: Ingress,
            available: &[Ingress],
            gone: &gone,
        };
        let records = [
            record("a", Cloudflare, Active),
            record("b", Ingress, Active),
        ];
        assert_eq!(
            plan(&records, facts),
            vec![
                Action::Move {
                    record: records[0].clone(),
                    take_out: false
                },
                Action::Repair(records[1].clone()),
            ]
        );
    }

    #[test]
    fn repairs_follow_the_claims() {
        let applied = RouteRecord {
            dns_record_id: Some("d-a".into()),
            ..record("a", Cloudflare, Active)
        };
        let unapplied = RouteRecord {
            applied: false,
            ..applied.clone()
        };
        let right = [claim("a", "d-a", true, true)];
        let moved = [claim("a", "d-new", true, true)];
        let wrong = [claim("a", "d-a", false, true)];
        let table: [(&RouteRecord, Option<&[Claim]>, Repair); 7] = [
            (&applied, Some(&right), Repair::Done),
            (&unapplied, Some(&right), Repair::Record("d-a".into())),
            (&applied, Some(&moved), Repair::Record("d-new".into())),
            // Not a proxied CNAME to the tunnel: made right.
            (&applied, Some(&wrong), Repair::Apply),
            (&applied, Some(&[]), Repair::Apply),
            (&unapplied, Some(&[]), Repair::Apply),
            (&applied, None, Repair::Unknown),
        ];
        for (record, claims, expected) in table {
            assert_eq!(repair(record, claims), expected, "{record:?} {claims:?}");
        }
    }

    #[test]
    fn orphans_are_orphanable_claims_no_record_names() {
        let records = [
            record("a", Cloudflare, Active),
            record("b", Cloudflare, Removing),
        ];
        let claims = [
            claim("a", "1", true, true),
            claim("b", "2", true, true),
            claim("c", "3", true, true),
            // Ours, but pointing elsewhere or outside our domain: kept.
            claim("d", "4", false, false),
        ];
        assert_eq!(orphans(&claims, &records), vec![claims[2].clone()]);
        assert_eq!(orphans(&[], &records), Vec::new());
    }
}
