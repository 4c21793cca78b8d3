//! Unit tests of the Lease logic.

use super::identity::{ProcessId, process_start, start_time, this_process};
use super::*;

fn lease(holder: Option<&str>, renewed: &str, seconds: i32) -> Lease {
    Lease {
        metadata: ObjectMeta::default(),
        spec: Some(LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(renewed.parse().unwrap())),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn holder_only_until_expiry() {
    let now: jiff::Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
    let held = lease(Some("a"), "2026-11-26T09:59:50Z", 15);
    assert_eq!(unexpired_holder(&held, now), Some("a"));
    let expired = lease(Some("a"), "2026-11-26T09:59:44Z", 15);
    assert_eq!(unexpired_holder(&expired, now), None);
    let freed = lease(Some(""), "2026-11-26T09:59:59Z", 15);
    assert_eq!(unexpired_holder(&freed, now), None);
    let none = lease(None, "2026-11-26T09:59:59Z", 15);
    assert_eq!(unexpired_holder(&none, now), None);
    assert_eq!(lease_name("svc-1a2b3c4d"), "paas-operator.svc-1a2b3c4d");
}

#[test]
fn default_timing_renews_before_giving_up_and_stops_helm_before_expiry() {
    let timing = LeaseTiming {
        ttl: Duration::from_secs(15),
        stop_margin: Duration::from_secs(5),
    };
    assert_eq!(timing.renew_every(), Duration::from_secs(5));
    assert_eq!(timing.give_up_after(), Duration::from_secs(9));
    assert_eq!(timing.retry_every(), Duration::from_secs(1));
    assert_eq!(timing.attempt_limit(), Duration::from_secs(2));
    // Given up, helm gets SIGTERM, and SIGKILL within the margin:
    // all before the Lease could lapse for anyone else.
    assert!(timing.give_up_after() + timing.stop_margin < timing.ttl);
    assert!(timing.check().is_ok());
    let short = LeaseTiming {
        ttl: Duration::from_secs(6),
        stop_margin: Duration::from_secs(5),
    };
    assert!(short.check().unwrap_err().contains("LEASE_TTL"));
}

#[test]
fn stat_start_time_skips_a_command_name_with_spaces() {
    let stat =
        "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
    assert_eq!(start_time(stat), Some(987_654));
    assert_eq!(start_time("garbage"), None);
}

#[test]
fn identities_round_trip() {
    let process = ProcessId {
        host: "node-a".into(),
        pid_namespace: "4026531836".into(),
        pid: 17,
        start: 99,
    };
    let identity = Identity::new("u1", Some("op-7f9"), Some(process.clone()));
    assert_eq!(
        identity.as_str(),
        "paas-operator-u1;pod=op-7f9;proc=node-a/4026531836/17/99"
    );
    let parsed = Identity::parse(identity.as_str());
    assert_eq!(parsed, identity);
    // An older replica's plain id: nothing known about it.
    let plain = Identity::parse("paas-operator-0b1c");
    assert_eq!((plain.pod, plain.process), (None, None));
}

#[tokio::test]
async fn only_holders_certainly_gone_are_dead() {
    let me = this_process().expect("/proc is readable here");
    let identity = Identity::new("me", Some("op-1"), Some(me.clone()));
    // An earlier container of the same pod.
    assert!(identity.knows_dead("paas-operator-old;pod=op-1").await);
    // Another pod: alive until its Lease expires.
    assert!(!identity.knows_dead("paas-operator-x;pod=op-2").await);
    // Ourselves.
    assert!(!identity.knows_dead(identity.as_str()).await);
    let with_process = |pid: u32, start: u64| {
        Identity::new(
            "other",
            None,
            Some(ProcessId {
                pid,
                start,
                ..me.clone()
            }),
        )
        .as_str()
        .to_owned()
    };
    // A live process of this host: pid 1 with its real start time.
    let init_start = process_start(1).await.expect("pid 1");
    assert!(!identity.knows_dead(&with_process(1, init_start)).await);
    // The same pid with another start time: the pid was reused.
    assert!(identity.knows_dead(&with_process(1, init_start + 1)).await);
    // Our own pid, started at another time: a process that ran before us.
    assert!(
        identity
            .knows_dead(&with_process(me.pid, me.start + 1))
            .await
    );
    // Another host, or another pid namespace: cannot tell.
    let elsewhere = Identity::new(
        "far",
        None,
        Some(ProcessId {
            host: "node-b".into(),
            ..me.clone()
        }),
    );
    assert!(!identity.knows_dead(elsewhere.as_str()).await);
}
