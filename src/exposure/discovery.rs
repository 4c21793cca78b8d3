//! Which Service and port a release is exposed at: the release's Services
//! (labelled `app.kubernetes.io/instance={release}`), headless ones
//! skipped, the first (by name) taken, and on it the first of the usual
//! web ports, else its first port. `service_name` and `service_port` in
//! `expose` override either choice. No waiting: helm has created the
//! Services when install returns.

use k8s_openapi::api::core::v1::Service;
use kube::api::ListParams;
use kube::{Api, Client};

use super::names::ServiceName;
use crate::kube::KubeError;

/// Ports preferred, in this order, when a Service has several.
pub(crate) const PREFERRED_PORTS: [i32; 6] = [80, 8080, 3000, 8000, 443, 8443];

/// The port of `service` to route to: the first of [`PREFERRED_PORTS`]
/// it has, else its first port.
pub(crate) fn choose_port(service: &Service) -> Option<u16> {
    let ports: Vec<i32> = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ports| ports.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    let chosen = PREFERRED_PORTS
        .iter()
        .find(|preferred| ports.contains(preferred))
        .or(ports.first())?;
    u16::try_from(*chosen).ok()
}

fn is_headless(service: &Service) -> bool {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .is_some_and(|ip| ip == "None")
}

/// The first Service, by name, that is not headless and has a port.
pub(crate) fn choose_service(services: &[Service]) -> Option<(String, u16)> {
    let mut candidates: Vec<&Service> = services.iter().filter(|s| !is_headless(s)).collect();
    candidates.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    candidates.into_iter().find_map(|service| {
        let name = service.metadata.name.clone()?;
        Some((name, choose_port(service)?))
    })
}

/// The Service and port to expose the release at; `None` when it has no
/// usable Service.
pub(crate) async fn find_target(
    client: &Client,
    namespace: &str,
    release: &str,
    name: Option<&ServiceName>,
    port: Option<u16>,
) -> Result<Option<(String, u16)>, KubeError> {
    let api: Api<Service> = Api::namespaced(client.clone(), namespace);
    match (name, port) {
        (Some(name), Some(port)) => Ok(Some((name.as_str().to_owned(), port))),
        (Some(name), None) => {
            let service = api
                .get_opt(name.as_str())
                .await
                .map_err(KubeError::api("reading the release's Service"))?;
            Ok(service
                .as_ref()
                .and_then(choose_port)
                .map(|port| (name.as_str().to_owned(), port)))
        }
        (None, port) => {
            let selector = format!("app.kubernetes.io/instance={release}");
            let services = api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(KubeError::api("listing the release's Services"))?;
            Ok(
                choose_service(&services.items)
                    .map(|(name, chosen)| (name, port.unwrap_or(chosen))),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use kube::api::ObjectMeta;

    use super::*;

    fn service(name: &str, cluster_ip: Option<&str>, ports: &[i32]) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: cluster_ip.map(str::to_owned),
                ports: Some(
                    ports
                        .iter()
                        .map(|port| ServicePort {
                            port: *port,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn preferred_ports_first_else_the_first_port() {
        assert_eq!(
            choose_port(&service("a", None, &[9000, 8080, 80])),
            Some(80)
        );
        assert_eq!(choose_port(&service("a", None, &[9000, 3000])), Some(3000));
        assert_eq!(choose_port(&service("a", None, &[9000, 9001])), Some(9000));
        assert_eq!(choose_port(&service("a", None, &[])), None);
    }

    #[test]
    fn headless_services_are_skipped() {
        let services = [
            service("db-headless", Some("None"), &[80]),
            service("web", Some("10.96.0.1"), &[5678]),
            service("api", Some("10.96.0.2"), &[]),
        ];
        assert_eq!(choose_service(&services), Some(("web".into(), 5678)));
        assert_eq!(choose_service(&services[..1]), None);
    }
}
