//! What the service is asked to do, validated: built from the wire
//! requests before anything touches helm or the cluster, so a write can only
//! ever hold a valid namespace, name, chart and values.

use serde_json::{Map, Value};

use crate::error::{ApiError, Code};
use crate::exposure::ExposeSpec;
use crate::helm::ValuesMode;
use crate::model::{InstallRequest, UpgradeRequest};
use crate::names::{ChartPolicy, ChartRef, ChartVersion, ReleaseName, TenantNamespace};

/// Maximum nesting depth of `values`.
const MAX_VALUES_DEPTH: usize = 32;

/// A chart and its version (`crate::charts` fetches it for helm).
#[derive(Debug, Clone)]
pub struct ChartSpec {
    pub chart: ChartRef,
    pub version: Option<ChartVersion>,
}

impl ChartSpec {
    fn parse(
        chart: &str,
        repo_url: Option<&str>,
        version: Option<&str>,
        policy: &ChartPolicy,
    ) -> Result<Self, ApiError> {
        let chart = ChartRef::parse(chart, repo_url, policy)?;
        let version = version.map(ChartVersion::parse).transpose()?;
        Ok(Self { chart, version })
    }
}

/// `POST /api/releases`, validated.
#[derive(Debug, Clone)]
pub struct Install {
    pub namespace: TenantNamespace,
    pub name: ReleaseName,
    pub chart: ChartSpec,
    pub values: Map<String, Value>,
    pub create_namespace: bool,
    /// Where to publish the release once installed (`expose`).
    pub expose: Option<ExposeSpec>,
}

impl Install {
    pub fn parse(
        request: InstallRequest,
        prefix: &str,
        policy: &ChartPolicy,
    ) -> Result<Self, ApiError> {
        let namespace = TenantNamespace::parse(&request.namespace, prefix)?;
        let name = ReleaseName::parse(&request.name)?;
        let expose = ExposeSpec::parse(request.expose.as_ref(), &namespace, &name, prefix)?;
        Ok(Self {
            namespace,
            name,
            chart: ChartSpec::parse(
                &request.chart,
                request.repo_url.as_deref(),
                request.version.as_deref(),
                policy,
            )?,
            values: checked_values(request.values)?,
            create_namespace: request.create_namespace,
            expose,
        })
    }
}

/// `PATCH /api/releases/{namespace}/{name}`, validated.
#[derive(Debug, Clone)]
pub struct Upgrade {
    pub chart: ChartSpec,
    pub values: Map<String, Value>,
    pub mode: ValuesMode,
}

impl Upgrade {
    pub fn parse(request: UpgradeRequest, policy: &ChartPolicy) -> Result<Self, ApiError> {
        let Some(chart) = request.chart.as_deref() else {
            return Err(ApiError::new(
                Code::ChartRequired,
                "An upgrade needs `chart` (the chart reference to upgrade to)",
            ));
        };
        let chart = ChartSpec::parse(
            chart,
            request.repo_url.as_deref(),
            request.version.as_deref(),
            policy,
        )?;
        let mode = if request.reset_values || !request.reuse_values {
            ValuesMode::Reset
        } else {
            ValuesMode::Reuse
        };
        Ok(Self {
            chart,
            values: checked_values(request.values)?,
            mode,
        })
    }
}

/// Values must be an object nested at most [`MAX_VALUES_DEPTH`] deep.
fn checked_values(values: Option<Map<String, Value>>) -> Result<Map<String, Value>, ApiError> {
    let values = values.unwrap_or_default();
    fn depth(value: &Value) -> usize {
        match value {
            Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    let deepest = values.values().map(depth).max().unwrap_or(0);
    if deepest >= MAX_VALUES_DEPTH {
        return Err(ApiError::new(
            Code::InvalidValues,
            format!("values are nested deeper than {MAX_VALUES_DEPTH} levels"),
        ));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The platform's four app templates (its `cloud_app_templates.xml`),
    /// as it installs them: no version, `create_namespace`.
    const PLATFORM_CHARTS: [&str; 4] = [
        "oci://registry-1.docker.io/bitnamicharts/postgresql",
        "oci://registry-1.docker.io/bitnamicharts/redis",
        "oci://registry-1.docker.io/bitnamicharts/odoo",
        "oci://8gears.container-registry.com/library/n8n",
    ];

    #[test]
    fn the_platforms_catalogue_is_accepted_and_reachable_by_default() {
        use clap::Parser;
        let config = crate::config::Config::parse_from(["paas-operator"]);
        let policy = ChartPolicy::from_config(&config.charts);
        for chart in PLATFORM_CHARTS {
            let request: InstallRequest = serde_json::from_value(serde_json::json!({
                "namespace": "paas-ws-3f9a0c1d", "name": "svc-1a2b3c4d", "chart": chart,
                "values": {}, "create_namespace": true
            }))
            .unwrap();
            let install = Install::parse(request, "paas-ws-", &policy)
                .unwrap_or_else(|e| panic!("{chart}: {}", e.detail));
            assert!(install.chart.version.is_none(), "{chart}: the latest");
        }
        // Charts are fetched from the registries, Docker Hub's token
        // service and every CDN it redirects blob downloads to; nothing else.
        let egress = policy.fetch_hosts();
        assert!(matches!(egress, crate::names::AllowedHosts::Only(_)));
        for host in [
            "registry-1.docker.io",
            "8gears.container-registry.com",
            "auth.docker.io",
            "production.cloudflare.docker.com",
            "production.cloudfront.docker.com",
            "docker-images-prod.6aa30f8b08e16409b46e0173d6de2f56.r2.cloudflarestorage.com",
        ] {
            assert!(egress.admits(&format!("{host}:443")), "{host}");
        }
        assert!(!egress.admits("169.254.169.254:80"));
        assert!(!egress.admits("registry-1.docker.io.evil.example:443"));
    }

    #[test]
    fn values_depth_is_bounded() {
        let mut deep = serde_json::json!(1);
        for _ in 0..40 {
            deep = serde_json::json!({ "a": deep });
        }
        let map = deep.as_object().cloned();
        assert_eq!(checked_values(map).unwrap_err().code, Code::InvalidValues);
        let shallow = serde_json::json!({"a": {"b": [1, {"c": true}]}})
            .as_object()
            .cloned();
        assert!(checked_values(shallow).is_ok());
        assert!(checked_values(None).unwrap().is_empty());
    }

    #[test]
    fn upgrade_needs_a_chart_and_picks_the_values_mode() {
        let policy = ChartPolicy {
            allowed_sources: vec!["*".into()],
            ..ChartPolicy::default()
        };
        let request =
            |json: serde_json::Value| -> UpgradeRequest { serde_json::from_value(json).unwrap() };
        let missing = Upgrade::parse(request(serde_json::json!({})), &policy).unwrap_err();
        assert_eq!(missing.code, Code::ChartRequired);
        let chart = "oci://r.example/charts/web";
        let reuse = Upgrade::parse(request(serde_json::json!({"chart": chart})), &policy).unwrap();
        assert_eq!(reuse.mode, ValuesMode::Reuse);
        let reset = Upgrade::parse(
            request(serde_json::json!({"chart": chart, "reuse_values": false})),
            &policy,
        )
        .unwrap();
        assert_eq!(reset.mode, ValuesMode::Reset);
    }

    #[test]
    fn install_validates_every_field_before_anything_runs() {
        let policy = ChartPolicy {
            allowed_sources: vec!["*".into()],
            ..ChartPolicy::default()
        };
        let request = |namespace: &str, name: &str, chart: &str| -> InstallRequest {
            serde_json::from_value(serde_json::json!({
                "namespace": namespace, "name": name, "chart": chart
            }))
            .unwrap()
        };
        let chart = "oci://r.example/charts/web";
        let ok = Install::parse(request("paas-ws-1", "svc-a", chart), "paas-ws-", &policy);
        assert!(ok.is_ok());
        let codes = [
            (
                request("kube-system", "svc-a", chart),
                Code::InvalidNamespace,
            ),
            (request("paas-ws-1", "-x", chart), Code::InvalidReleaseName),
            (
                request("paas-ws-1", "svc-a", "--post-renderer=x"),
                Code::InvalidChart,
            ),
        ];
        for (request, code) in codes {
            assert_eq!(
                Install::parse(request, "paas-ws-", &policy)
                    .unwrap_err()
                    .code,
                code
            );
        }
    }
}
