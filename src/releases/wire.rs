//! The contract's wire types (`crate::model`) built from what helm/ and
//! kube/ return: a release record or its summary becomes a [`ReleaseInfo`]
//! or a [`Revision`], a pod's summary a [`PodInfo`]. The lower layers know
//! nothing of the wire format; this is the one place that maps to it.
//!
//! Reads stay allocation-light: the read cache keeps `ReleaseSummary`
//! and `PodSummary` (boxed strings), and the strings of the answer are
//! made here, once per answer.

use crate::helm::HelmRelease;
use crate::helm::release::ReleaseSummary;
use crate::kube::pods::PodSummary;
use crate::model::{PodInfo, ReleaseInfo, Revision};

/// The contract's view of one revision, without values.
pub fn release_info(summary: &ReleaseSummary) -> ReleaseInfo {
    ReleaseInfo {
        name: summary.name.to_string(),
        namespace: summary.namespace.to_string(),
        revision: summary.version,
        status: summary.status(),
        chart: summary.chart.to_string(),
        app_version: summary.app_version.to_string(),
        updated: summary.updated.to_string(),
        description: Some(summary.description.to_string()).filter(|d| !d.is_empty()),
        values: None,
        route: None,
    }
}

/// The contract's view of one revision with the user-supplied values
/// (install and upgrade answers).
pub fn release_info_with_values(release: &HelmRelease) -> ReleaseInfo {
    let mut info = release_info(&release.summary());
    info.values = Some(release.config.clone().unwrap_or_default());
    info
}

/// One entry of a release's history.
pub fn revision(summary: &ReleaseSummary) -> Revision {
    Revision {
        revision: summary.version,
        updated: summary.updated.to_string(),
        status: summary.status(),
        chart: format!("{}-{}", summary.chart, summary.chart_version),
        app_version: summary.app_version.to_string(),
        description: summary.description.to_string(),
    }
}

/// The release's pods (as `kube::pods::select_pods` picks them), sorted
/// by name.
pub fn pod_infos<'a>(
    pods: impl Iterator<Item = &'a PodSummary>,
    now: jiff::Timestamp,
) -> Vec<PodInfo> {
    let mut infos: Vec<PodInfo> = pods.map(|pod| pod_info(pod, now)).collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    infos
}

/// The contract's view of one pod.
pub fn pod_info(pod: &PodSummary, now: jiff::Timestamp) -> PodInfo {
    let age = pod
        .created
        .map(|t| format_age(now.duration_since(t).as_secs()))
        .unwrap_or_default();
    PodInfo {
        name: pod.name.to_string(),
        phase: pod.phase,
        ready: format!("{}/{}", pod.ready, pod.containers),
        restarts: pod.restarts,
        age,
    }
}

/// `12d`, `5h`, `3m` or `40s`: the largest whole unit, like kubectl.
pub fn format_age(seconds: i64) -> String {
    let seconds = seconds.max(0);
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PodPhase, ReleaseStatus};
    use serde_json::Map;

    /// A Helm 4 record as stored (fields we do not read included).
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
    fn releases_map_to_contract_types() {
        let release: HelmRelease = serde_json::from_str(RECORD).unwrap();
        let info = release_info_with_values(&release);
        assert_eq!(info.revision, 3);
        assert_eq!(info.status, ReleaseStatus::Deployed);
        assert_eq!(info.chart, "my-web-app");
        assert_eq!(info.app_version, "2.0");
        assert_eq!(info.updated, "2026-11-02T08:00:00.5Z");
        assert_eq!(info.description.as_deref(), Some("Upgrade complete"));
        assert_eq!(info.values.unwrap()["password"], "s3cret");
        assert!(release_info(&release.summary()).values.is_none());
        let revision = revision(&release.summary());
        assert_eq!(revision.chart, "my-web-app-1.2.3-rc.1");
        assert_eq!(revision.status, ReleaseStatus::Deployed);
        assert_eq!(revision.description, "Upgrade complete");
    }

    #[test]
    fn sparse_records_map_to_empty_fields() {
        let release: HelmRelease = serde_json::from_str(
            r#"{"name": "x", "version": 1, "info": {"status": "pending-install"}}"#,
        )
        .unwrap();
        let info = release_info_with_values(&release);
        assert_eq!(info.status, ReleaseStatus::PendingInstall);
        assert_eq!(info.updated, "");
        assert_eq!(info.values, Some(Map::new()));
        assert_eq!(info.description, None);
    }

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(format_age(40), "40s");
        assert_eq!(format_age(3 * 60 + 5), "3m");
        assert_eq!(format_age(5 * 3600 + 59), "5h");
        assert_eq!(format_age(12 * 86_400 + 1), "12d");
        assert_eq!(format_age(-5), "0s");
    }

    #[test]
    fn pods_map_to_contract_types_sorted_by_name() {
        let now: jiff::Timestamp = "2026-11-26T00:03:10Z".parse().unwrap();
        let pod = |name: &str, created: &str| PodSummary {
            name: name.into(),
            labels: std::iter::empty::<(&str, &str)>().collect(),
            phase: PodPhase::Running,
            containers: 2,
            ready: 1,
            restarts: 5,
            created: Some(created.parse().unwrap()),
        };
        let pods = [
            pod("w-1", "2026-11-26T00:00:00Z"),
            pod("a-1", "2026-11-20T00:00:00Z"),
        ];
        let infos = pod_infos(pods.iter(), now);
        let seen: Vec<(&str, PodPhase, &str, u32, &str)> = infos
            .iter()
            .map(|i| {
                (
                    i.name.as_str(),
                    i.phase,
                    i.ready.as_str(),
                    i.restarts,
                    i.age.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a-1", PodPhase::Running, "1/2", 5, "6d"),
                ("w-1", PodPhase::Running, "1/2", 5, "3m"),
            ]
        );
    }
}
