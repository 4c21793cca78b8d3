//! helm's only way out: a small HTTP proxy inside the operator, given to
//! every helm child as `HTTPS_PROXY`/`HTTP_PROXY`, that admits the hosts
//! it is started with and refuses every other. helm is only ever given
//! local archives (`crate::charts` fetches charts), so the operator starts
//! it admitting no host at all: whatever helm might still try (a values
//! schema reference, say) is refused and counted, and helm cannot be used
//! to probe the network (SSRF).
//!
//! ```text
//!  helm ── CONNECT host:443 ──────────────► guard ── allowed? ──► host:443 (TLS end to end)
//!  helm ── GET http://host:port/x HTTP/1.1 ► guard ── allowed? ──► host:port (one request per connection)
//!                                              └── refused: 403, nothing connected
//! ```
//!
//! The Kubernetes API is left out (`NO_PROXY`). Go never proxies loopback
//! destinations, so what helm would send to 127.0.0.1 or `localhost` is
//! not seen here: the chart inspection (`crate::charts::schema`) refuses
//! such references before helm runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// Largest request head read from helm.
const MAX_HEAD: usize = 16 << 10;
/// How long helm has to send a request head, and the guard to connect.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The running guard; stops when dropped.
#[derive(Debug)]
pub struct EgressGuard {
    address: SocketAddr,
    task: AbortHandle,
}

pub use crate::names::AllowedHosts;

impl EgressGuard {
    /// Listens on 127.0.0.1 (a free port) and serves helm.
    pub async fn start(allowed: AllowedHosts) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let allowed = Arc::new(allowed);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let allowed = allowed.clone();
                tokio::spawn(async move {
                    if let Err(error) = relay(client, &allowed).await {
                        tracing::debug!(%error, "chart source connection ended");
                    }
                });
            }
        });
        Ok(Self {
            address,
            task: task.abort_handle(),
        })
    }

    /// `http://127.0.0.1:PORT`, for helm's proxy variables.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The environment that sends helm's chart traffic through the guard
    /// and leaves `no_proxy` (the Kubernetes API) direct.
    pub fn child_env(&self, no_proxy: &[String]) -> Vec<(String, String)> {
        let proxy = self.proxy_url();
        let direct = no_proxy.join(",");
        ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"]
            .into_iter()
            .map(|key| (key.to_owned(), proxy.clone()))
            .chain(["NO_PROXY", "no_proxy"].map(|key| (key.to_owned(), direct.clone())))
            .collect()
    }
}

impl Drop for EgressGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request of helm: a tunnel (`CONNECT host:port`), or one plain HTTP
/// request in absolute form, passed on with `Connection: close` so the next
/// request (perhaps to another host) comes on a new connection and is
/// checked again.
async fn relay(mut client: TcpStream, allowed: &AllowedHosts) -> std::io::Result<()> {
    let head = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut client))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    let Some(request) = Request::parse(&head.head) else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    if !allowed.admits(&request.target) {
        tracing::warn!(target_host = %request.target, "refused: helm tried to reach a host that is not an allowed chart source");
        crate::metrics::egress_refused();
        client
            .write_all(b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    }
    let mut upstream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(&request.target))
        .await
        .map_err(|_| std::io::ErrorKind::TimedOut)??;
    match request.forward {
        None => {
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await?;
        }
        Some(forward) => {
            upstream.write_all(&forward).await?;
        }
    }
    upstream.write_all(&head.rest).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

struct Head {
    head: Vec<u8>,
    /// Bytes read past the head (the start of a body or of TLS).
    rest: Vec<u8>,
}

async fn read_head(client: &mut TcpStream) -> std::io::Result<Head> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = client.read(&mut chunk).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok(Head { head: buffer, rest });
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// A request head from helm: where to, and what to send there.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    /// `host:port`.
    target: String,
    /// For plain HTTP: the head rewritten to origin form with
    /// `Connection: close`; `None` for a tunnel.
    forward: Option<Vec<u8>>,
}

impl Request {
    fn parse(head: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(head).ok()?;
        let mut lines = text.split("\r\n");
        let mut first = lines.next()?.split(' ');
        let (method, uri, version) = (first.next()?, first.next()?, first.next()?);
        if method == "CONNECT" {
            return Some(Self {
                target: valid_target(uri)?,
                forward: None,
            });
        }
        let rest = uri.strip_prefix("http://")?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let target = if authority.contains(':') {
            valid_target(authority)?
        } else {
            valid_target(&format!("{authority}:80"))?
        };
        let mut forward = format!("{method} /{path} {version}\r\n");
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line
                .split(':')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !matches!(
                name.as_str(),
                "connection" | "proxy-connection" | "keep-alive" | "proxy-authorization"
            ) {
                forward.push_str(line);
                forward.push_str("\r\n");
            }
        }
        forward.push_str("Connection: close\r\n\r\n");
        Some(Self {
            target,
            forward: Some(forward.into_bytes()),
        })
    }
}

/// `host:port` with a plain host name or IPv4 address and a numeric port.
fn valid_target(target: &str) -> Option<String> {
    let (host, port) = target.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let plain = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
    plain.then(|| target.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_admitted_by_name_and_port() {
        let allowed = AllowedHosts::new([
            "registry-1.docker.io".to_owned(),
            "192.0.2.2:8080".to_owned(),
        ]);
        assert!(allowed.admits("registry-1.docker.io:443"));
        assert!(allowed.admits("REGISTRY-1.docker.io:80"));
        assert!(!allowed.admits("registry-1.docker.io:8443"));
        assert!(!allowed.admits("registry-1.docker.io.evil.example:443"));
        assert!(allowed.admits("192.0.2.2:8080"));
        assert!(!allowed.admits("192.0.2.2:8081"));
        assert!(!allowed.admits("169.254.169.254:80"));
    }

    #[test]
    fn requests_are_read_as_tunnels_or_one_plain_request() {
        let tunnel =
            Request::parse(b"CONNECT registry-1.docker.io:443 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            tunnel,
            Some(Request {
                target: "registry-1.docker.io:443".into(),
                forward: None
            })
        );
        let plain = Request::parse(
            b"GET http://charts.example:8080/stable/index.yaml HTTP/1.1\r\nHost: charts.example:8080\r\nConnection: keep-alive\r\nUser-Agent: Helm\r\n\r\n",
        )
        .unwrap();
        assert_eq!(plain.target, "charts.example:8080");
        assert_eq!(
            String::from_utf8(plain.forward.unwrap()).unwrap(),
            "GET /stable/index.yaml HTTP/1.1\r\nHost: charts.example:8080\r\nUser-Agent: Helm\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            Request::parse(b"GET http://charts.example/x HTTP/1.1\r\n\r\n")
                .unwrap()
                .target,
            "charts.example:80"
        );
        for bad in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"CONNECT user@host:443 HTTP/1.1\r\n\r\n",
            b"CONNECT host:notaport HTTP/1.1\r\n\r\n",
        ] {
            assert!(Request::parse(bad).is_none());
        }
    }

    #[tokio::test]
    async fn refuses_other_hosts_and_relays_allowed_ones() {
        // An upstream that answers one request.
        let upstream = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream_address = upstream.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = upstream.accept().await.unwrap();
            let mut head = vec![0u8; 1024];
            let read = socket.read(&mut head).await.unwrap();
            assert!(String::from_utf8_lossy(&head[..read]).starts_with("GET /x HTTP/1.1\r\n"));
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .unwrap();
        });
        let guard = EgressGuard::start(AllowedHosts::new([upstream_address.to_string()]))
            .await
            .unwrap();
        let ask = |line: String| {
            let proxy = guard.address;
            async move {
                let mut socket = TcpStream::connect(proxy).await.unwrap();
                socket.write_all(line.as_bytes()).await.unwrap();
                let mut answer = String::new();
                socket.read_to_string(&mut answer).await.unwrap();
                answer
            }
        };
        let refused = ask("GET http://127.0.0.1:9/x HTTP/1.1\r\nHost: a\r\n\r\n".into()).await;
        assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
        let tunnel = ask("CONNECT 169.254.169.254:443 HTTP/1.1\r\n\r\n".into()).await;
        assert!(tunnel.starts_with("HTTP/1.1 403"), "{tunnel}");
        let relayed = ask(format!(
            "GET http://{upstream_address}/x HTTP/1.1\r\nHost: a\r\n\r\n"
        ))
        .await;
        assert!(relayed.ends_with("ok"), "{relayed}");
    }
}
