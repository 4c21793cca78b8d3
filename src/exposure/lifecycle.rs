//! The route lifecycle as a pure state machine. Every change of a route
//! record goes through [`advance`], which asks [`transition`] whether the
//! event may happen in the record's state; the store writes the result,
//! or deletes the record when the route is gone.
//!
//! ```text
//!            Checked              Remove, Taken             Removed
//!  Pending ──────────► Active ──────────────────► Removing ─────────► gone
//!   │  ▲ Claimed,       │  ▲ Claimed, Applied       │  ▲ Remove, Taken
//!   │  └─┘ Moved        │  └─┘                      │  └─┘ (retried)
//!   │                   ◄──────── Claimed ──────────┤
//!   │ Remove, Taken                                 │ Moved
//!   ▼                                               ▼
//!  gone                                  Pending (on another backend)
//! ```
//!
//! `Pending`: claimed, but its hostname not yet known to be free of
//! someone else's rule; nothing of it is put in place. `Active`: wanted in
//! place (`applied` once it is). `Removing`: being taken out of its
//! backend; the record goes last. A failed step is no event: the record
//! keeps its state (a failed apply stays `Active` and not applied, a
//! failed check `Pending`, a failed removal `Removing`), and
//! reconciliation sends the step's event again. Any event not in the
//! table is refused: the record changed meanwhile, and is left to whoever
//! changed it.

use super::record::{RouteRecord, RouteState};
use crate::config::ExposureBackend;

/// What happened to a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// Its hostname was found free of anyone else's claim.
    Checked,
    /// Someone else routes its hostname: a pending claim is given up, an
    /// active route taken out again.
    Taken,
    /// Its owner claimed it again, perhaps with a new target.
    Claimed {
        service_url: String,
        path: Option<String>,
    },
    /// Put in place by its backend, routing to `service_url`.
    Applied {
        service_url: String,
        dns_record_id: Option<String>,
    },
    /// It is no longer wanted.
    Remove,
    /// Its backend no longer holds it: the record goes.
    Removed,
    /// Out of its old backend (or never put there): recorded on `to`, to
    /// be checked there.
    Moved { to: ExposureBackend },
}

/// Where an event leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    State(RouteState),
    /// The record is deleted.
    Gone,
}

/// The event cannot happen in this state (the record changed meanwhile:
/// someone else's write came first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a route in state {from:?} cannot take that event")]
pub(crate) struct Refused {
    pub(crate) from: RouteState,
}

/// The lifecycle's transitions.
pub(crate) fn transition(from: RouteState, event: &Event) -> Result<Next, Refused> {
    use Event as E;
    use RouteState::{Active, Pending, Removing};
    let to = match (from, event) {
        (Pending, E::Checked) => Next::State(Active),
        (Pending, E::Claimed { .. } | E::Moved { .. }) => Next::State(Pending),
        (Pending, E::Remove | E::Taken) => Next::Gone,
        (Active, E::Claimed { .. } | E::Applied { .. }) => Next::State(Active),
        (Active, E::Remove | E::Taken) => Next::State(Removing),
        (Removing, E::Remove | E::Taken) => Next::State(Removing),
        (Removing, E::Removed) => Next::Gone,
        (Removing, E::Claimed { .. }) => Next::State(Active),
        (Removing, E::Moved { .. }) => Next::State(Pending),
        _ => return Err(Refused { from }),
    };
    Ok(to)
}

/// The record after `event`: its new state and the fields the event sets.
/// `Applied` is refused too when the record's target changed since the
/// route was applied (the next reconciliation applies the new one).
pub(crate) fn advance(record: &RouteRecord, event: &Event) -> Result<Option<RouteRecord>, Refused> {
    let state = match transition(record.state, event)? {
        Next::State(state) => state,
        Next::Gone => return Ok(None),
    };
    let mut next = RouteRecord {
        state,
        ..record.clone()
    };
    match event {
        Event::Claimed { service_url, path } => {
            let changed = record.service_url != *service_url
                || record.path != *path
                || record.state == RouteState::Removing;
            if changed {
                next.service_url.clone_from(service_url);
                next.path.clone_from(path);
                next.applied = false;
            }
        }
        Event::Applied {
            service_url,
            dns_record_id,
        } => {
            if record.service_url != *service_url {
                return Err(Refused { from: record.state });
            }
            next.applied = true;
            next.dns_record_id.clone_from(dns_record_id);
        }
        Event::Moved { to } => {
            next.backend = *to;
            next.applied = false;
            next.dns_record_id = None;
        }
        Event::Remove | Event::Taken => next.applied = false,
        Event::Checked | Event::Removed => {}
    }
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposure::names::Subdomain;
    use crate::exposure::record::{ReleaseRef, RouteKind};
    use RouteState::{Active, Pending, Removing};

    fn claimed() -> Event {
        Event::Claimed {
            service_url: "http://b.ns.svc.cluster.local:80".into(),
            path: None,
        }
    }

    fn applied(service_url: &str) -> Event {
        Event::Applied {
            service_url: service_url.into(),
            dns_record_id: Some("dns-1".into()),
        }
    }

    fn moved() -> Event {
        Event::Moved {
            to: ExposureBackend::Ingress,
        }
    }

    /// Every state against every event: the whole table, refusals included.
    #[test]
    fn every_transition_is_as_the_table_says() {
        let gone = Ok(Next::Gone);
        let to = |state| Ok(Next::State(state));
        let refused = |from| Err(Refused { from });
        let table: Vec<(RouteState, Event, Result<Next, Refused>)> = vec![
            (Pending, Event::Checked, to(Active)),
            (Pending, Event::Taken, gone),
            (Pending, claimed(), to(Pending)),
            (Pending, applied("x"), refused(Pending)),
            (Pending, Event::Remove, gone),
            (Pending, Event::Removed, refused(Pending)),
            (Pending, moved(), to(Pending)),
            (Active, Event::Checked, refused(Active)),
            (Active, Event::Taken, to(Removing)),
            (Active, claimed(), to(Active)),
            (Active, applied("x"), to(Active)),
            (Active, Event::Remove, to(Removing)),
            (Active, Event::Removed, refused(Active)),
            (Active, moved(), refused(Active)),
            (Removing, Event::Checked, refused(Removing)),
            (Removing, Event::Taken, to(Removing)),
            (Removing, claimed(), to(Active)),
            (Removing, applied("x"), refused(Removing)),
            (Removing, Event::Remove, to(Removing)),
            (Removing, Event::Removed, gone),
            (Removing, moved(), to(Pending)),
        ];
        assert_eq!(table.len(), 3 * 7, "every state meets every event");
        for (from, event, expected) in table {
            assert_eq!(transition(from, &event), expected, "{from:?} + {event:?}");
        }
    }

    fn record(state: RouteState) -> RouteRecord {
        RouteRecord {
            subdomain: Subdomain::parse("a").unwrap(),
            hostname: "a.apps.example.com".into(),
            service_url: "http://a.ns.svc.cluster.local:80".into(),
            path: None,
            owner: Some(ReleaseRef {
                namespace: "ns".into(),
                name: "a".into(),
            }),
            kind: RouteKind::App,
            backend: ExposureBackend::Cloudflare,
            state,
            applied: true,
            dns_record_id: Some("dns-0".into()),
            version: Some("1".into()),
        }
    }

    #[test]
    fn applied_records_the_dns_record_only_for_the_target_applied() {
        let active = RouteRecord {
            applied: false,
            ..record(Active)
        };
        let done = advance(&active, &applied(&active.service_url))
            .unwrap()
            .unwrap();
        assert!(done.applied);
        assert_eq!(done.dns_record_id.as_deref(), Some("dns-1"));
        // The target changed since: not marked applied.
        assert_eq!(
            advance(&active, &applied("http://old.ns.svc.cluster.local:80")),
            Err(Refused { from: Active })
        );
    }

    #[test]
    fn a_claim_with_a_new_target_must_be_applied_again() {
        let same = Event::Claimed {
            service_url: record(Active).service_url,
            path: None,
        };
        assert_eq!(
            advance(&record(Active), &same).unwrap(),
            Some(record(Active))
        );
        let changed = advance(&record(Active), &claimed()).unwrap().unwrap();
        assert_eq!(changed.service_url, "http://b.ns.svc.cluster.local:80");
        assert!(!changed.applied);
        // Claimed while being removed: wanted again, to be applied again.
        let again = advance(&record(Removing), &same).unwrap().unwrap();
        assert_eq!((again.state, again.applied), (Active, false));
        // A pending claim stays pending until checked.
        assert_eq!(
            advance(&record(Pending), &claimed())
                .unwrap()
                .unwrap()
                .state,
            Pending
        );
    }

    #[test]
    fn removal_unmarks_applied_and_ends_with_the_record_gone() {
        let removing = advance(&record(Active), &Event::Remove).unwrap().unwrap();
        assert_eq!((removing.state, removing.applied), (Removing, false));
        assert_eq!(advance(&removing, &Event::Removed), Ok(None));
        assert_eq!(advance(&record(Pending), &Event::Remove), Ok(None));
    }

    #[test]
    fn a_move_lands_as_a_pending_claim_on_the_new_backend() {
        let moved = advance(&record(Removing), &moved()).unwrap().unwrap();
        assert_eq!(moved.backend, ExposureBackend::Ingress);
        assert_eq!(moved.state, Pending);
        assert_eq!((moved.applied, moved.dns_record_id), (false, None));
    }
}
