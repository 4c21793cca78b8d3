//! Dedicated tunnels (`/api/tunnels`): one remotely managed tunnel per
//! customer device, made, read and deleted for the platform.
//!
//! Making one is compensated: a tunnel (and DNS record) half made is
//! deleted when a later step fails, and the steps run in their own task, so
//! a caller that goes away mid-way does not leave one half made either.
//!
//! ```text
//!  create tunnel (config_src cloudflare, random 32-byte secret)
//!    ─► PUT its configuration [hostname ─► service, catch-all]   fails ─► delete tunnel
//!    ─► CNAME hostname ─► <id>.cfargotunnel.com (if a zone)      fails ─► dns_record_id null
//!    ─► its token                                                fails ─► delete CNAME, tunnel
//! ```

use base64::Engine;
use rand::RngCore;
use serde_json::json;

use super::cloudflare::document::CATCH_ALL_SERVICE;
use super::cloudflare::{CfConnection, CfError, CfTunnel, Cloudflare, cname_body, tunnel_target};
use super::names::{Hostname, TunnelId, TunnelName};
use crate::error::{ApiError, Code};
use crate::model::exposure::{TunnelConnection, TunnelCreated, TunnelStatus, TunnelToken};

/// The comment on the DNS records of dedicated tunnels.
pub(crate) const TUNNEL_COMMENT: &str = "paas-operator tunnel";

/// A validated `POST /api/tunnels`.
#[derive(Debug, Clone)]
pub(crate) struct NewTunnel {
    pub(crate) name: TunnelName,
    pub(crate) hostname: Hostname,
    pub(crate) service_url: String,
}

/// Dedicated tunnels of the account.
#[derive(Clone, Debug)]
pub(crate) struct Tunnels {
    cloudflare: Cloudflare,
    zone: Option<String>,
}

impl Tunnels {
    pub(crate) fn new(cloudflare: Cloudflare, zone: Option<String>) -> Self {
        Self {
            cloudflare,
            zone: zone.filter(|z| !z.is_empty()),
        }
    }

    /// Makes the tunnel, its configuration and its DNS record; returns its
    /// token. Runs to its end (or its compensation) even when the caller
    /// goes away.
    pub(crate) async fn create(&self, new: NewTunnel) -> Result<TunnelCreated, ApiError> {
        let this = self.clone();
        tokio::spawn(async move { this.create_compensated(new).await })
            .await
            .map_err(|error| {
                tracing::error!(%error, "tunnel creation task failed");
                ApiError::new(Code::CloudflareError, "The tunnel could not be created")
            })?
    }

    async fn create_compensated(&self, new: NewTunnel) -> Result<TunnelCreated, ApiError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let secret = base64::engine::general_purpose::STANDARD.encode(secret);
        let tunnel = self
            .cloudflare
            .create_tunnel(new.name.as_str(), &secret)
            .await
            .map_err(|error| match error.status() {
                Some(409) => ApiError::new(
                    Code::TunnelNameTaken,
                    format!("A tunnel named {:?} exists already", new.name.as_str()),
                ),
                _ => error.into(),
            })?;
        let id = tunnel.id.clone();
        tracing::info!(tunnel = %id, hostname = new.hostname.as_str(), "tunnel created");
        let config = json!({ "ingress": [
            { "hostname": new.hostname.as_str(), "service": new.service_url },
            { "service": CATCH_ALL_SERVICE },
        ]});
        if let Err(error) = self.cloudflare.put_config(&id, &config).await {
            self.undo(&id, None).await;
            return Err(error.into());
        }
        let dns_record_id = self.dns_record(&id, &new.hostname).await;
        let token = match self.cloudflare.tunnel_token(&id).await {
            Ok(token) => token,
            Err(error) => {
                self.undo(&id, dns_record_id.as_deref()).await;
                return Err(error.into());
            }
        };
        Ok(TunnelCreated {
            tunnel_id: id,
            tunnel_name: tunnel.name,
            tunnel_token: token,
            hostname: new.hostname.as_str().to_owned(),
            dns_record_id,
        })
    }

    /// The CNAME of a new tunnel's hostname, when there is a zone and the
    /// name is free (or is an older tunnel record of ours); `None` (logged)
    /// otherwise: a name someone else uses is never repointed.
    async fn dns_record(&self, tunnel: &str, hostname: &Hostname) -> Option<String> {
        let zone = self.zone.as_deref()?;
        let body = cname_body(hostname.as_str(), &tunnel_target(tunnel), TUNNEL_COMMENT);
        let outcome = async {
            let existing = self
                .cloudflare
                .list_dns(zone, &[("name", hostname.as_str())])
                .await?;
            match existing.as_slice() {
                [] => Ok(Some(self.cloudflare.create_dns(zone, &body).await?.id)),
                [only] if only.comment.as_deref() == Some(TUNNEL_COMMENT) => Ok(Some(
                    self.cloudflare.update_dns(zone, &only.id, &body).await?.id,
                )),
                _ => Ok::<_, CfError>(None),
            }
        }
        .await;
        match outcome {
            Ok(Some(id)) => Some(id),
            Ok(None) => {
                tracing::warn!(
                    tunnel,
                    hostname = hostname.as_str(),
                    "the hostname has DNS records that are not this operator's tunnels'; no CNAME made"
                );
                None
            }
            Err(error) => {
                tracing::warn!(tunnel, hostname = hostname.as_str(), %error, "no CNAME made for the tunnel");
                None
            }
        }
    }

    /// Deletes what a failed creation made.
    async fn undo(&self, tunnel: &str, dns_record: Option<&str>) {
        if let (Some(zone), Some(record)) = (&self.zone, dns_record)
            && let Err(error) = self.cloudflare.delete_dns(zone, record).await
        {
            tracing::error!(tunnel, %error, "a failed tunnel's DNS record could not be deleted; reconciliation will");
        }
        match self.cloudflare.delete_tunnel(tunnel).await {
            Ok(()) => tracing::info!(tunnel, "half-made tunnel deleted"),
            Err(error) => {
                tracing::error!(tunnel, %error, "a half-made tunnel could not be deleted");
            }
        }
    }

    /// The tunnel and its live connections; a deleted tunnel is not found.
    pub(crate) async fn status(&self, id: &TunnelId) -> Result<TunnelStatus, ApiError> {
        let tunnel = self.get(id).await?;
        Ok(TunnelStatus {
            tunnel_id: tunnel.id,
            name: tunnel.name,
            status: tunnel.status.unwrap_or_else(|| "unknown".to_owned()),
            connections: live_connections(&tunnel.connections),
            created_at: tunnel.created_at,
        })
    }

    pub(crate) async fn token(&self, id: &TunnelId) -> Result<TunnelToken, ApiError> {
        self.get(id).await?;
        let token = self
            .cloudflare
            .tunnel_token(id.as_str())
            .await
            .map_err(|e| not_found_or(e, id))?;
        Ok(TunnelToken {
            tunnel_id: id.to_string(),
            token,
        })
    }

    /// Deletes the tunnel's CNAMEs, then the tunnel (with its connections).
    /// A tunnel already gone is fine.
    pub(crate) async fn delete(&self, id: &TunnelId) -> Result<(), ApiError> {
        if let Some(zone) = &self.zone {
            let target = tunnel_target(id.as_str());
            match self
                .cloudflare
                .list_dns(zone, &[("content", target.as_str())])
                .await
            {
                Ok(records) => {
                    for record in records {
                        if let Err(error) = self.cloudflare.delete_dns(zone, &record.id).await {
                            tracing::warn!(tunnel = %id, %error, "a tunnel's DNS record could not be deleted; reconciliation will");
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(tunnel = %id, %error, "the tunnel's DNS records could not be listed; reconciliation will delete them");
                }
            }
        }
        self.cloudflare.delete_tunnel(id.as_str()).await?;
        tracing::info!(tunnel = %id, "tunnel deleted");
        Ok(())
    }

    async fn get(&self, id: &TunnelId) -> Result<CfTunnel, ApiError> {
        let tunnel = self
            .cloudflare
            .get_tunnel(id.as_str())
            .await
            .map_err(|e| not_found_or(e, id))?;
        if tunnel.deleted_at.is_some() {
            return Err(tunnel_not_found(id));
        }
        Ok(tunnel)
    }

    /// Whether a tunnel is gone (deleted or unknown); `None` when Cloudflare
    /// could not tell.
    pub(crate) async fn is_gone(&self, id: &str) -> Option<bool> {
        match self.cloudflare.get_tunnel(id).await {
            Ok(tunnel) => Some(tunnel.deleted_at.is_some()),
            Err(error) if error.is_not_found() => Some(true),
            Err(_) => None,
        }
    }

    /// DNS records made for dedicated tunnels whose tunnel is gone.
    pub(crate) async fn orphaned_dns(&self) -> Result<Vec<super::cloudflare::DnsRecord>, CfError> {
        let Some(zone) = &self.zone else {
            return Ok(Vec::new());
        };
        let records = self
            .cloudflare
            .list_dns(zone, &[("comment.exact", TUNNEL_COMMENT)])
            .await?;
        let mut orphans = Vec::new();
        for record in records {
            let Some(id) = record.content.strip_suffix(".cfargotunnel.com") else {
                continue;
            };
            if TunnelId::parse(id).is_ok() && self.is_gone(id).await == Some(true) {
                orphans.push(record);
            }
        }
        Ok(orphans)
    }

    pub(crate) async fn delete_dns(&self, id: &str) -> Result<(), CfError> {
        match &self.zone {
            Some(zone) => self.cloudflare.delete_dns(zone, id).await,
            None => Ok(()),
        }
    }
}

fn tunnel_not_found(id: &TunnelId) -> ApiError {
    ApiError::new(Code::TunnelNotFound, format!("Tunnel {id} not found"))
}

fn not_found_or(error: CfError, id: &TunnelId) -> ApiError {
    // Cloudflare answers 400 for an id of another form, 404 for an unknown one.
    if error.is_not_found() {
        tunnel_not_found(id)
    } else {
        error.into()
    }
}

/// The connections a client should count: one pending reconnect is a stale
/// connection, not a live one.
pub(crate) fn live_connections(connections: &[CfConnection]) -> Vec<TunnelConnection> {
    connections
        .iter()
        .filter(|c| !c.is_pending_reconnect)
        .map(|c| TunnelConnection {
            connector_id: c.id.clone(),
            kind: String::new(),
            origin_ip: c.origin_ip.clone(),
            opened_at: c.opened_at.clone().unwrap_or_default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_reconnects_are_not_live() {
        let connection = |id: &str, pending| CfConnection {
            id: id.into(),
            origin_ip: "192.0.2.1".into(),
            opened_at: Some("2026-01-01T00:00:00Z".into()),
            is_pending_reconnect: pending,
        };
        let live = live_connections(&[connection("a", false), connection("b", true)]);
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].connector_id, "a");
        assert_eq!(live[0].kind, "");
        assert_eq!(live[0].opened_at, "2026-01-01T00:00:00Z");
        assert!(live_connections(&[connection("c", true)]).is_empty());
    }
}
