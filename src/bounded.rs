//! Reading an answer from outside the operator — an app in a tenant
//! namespace, the API server's service proxy, Cloudflare — capped in size
//! and in time. Whoever sends the answer may be hostile (a tenant's app) or
//! broken: a body that never ends, or one that trickles a byte a minute,
//! must cost a bounded amount of memory and time and end in a clean error.
//!
//! [`read_body`] is the one way the operator reads a whole outside answer:
//! it stops reading one frame past `limit` bytes (so memory stays within
//! `limit` plus one frame of the transport, tens of KiB) and gives up at the
//! deadline, dropping the connection either way.

use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use tokio::time::Instant;

/// Why an answer was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The answer is larger than the cap.
    #[error("the answer is larger than {} KiB", .limit / 1024)]
    TooLarge { limit: usize },
    /// The answer did not end by the deadline.
    #[error("the answer did not arrive in time")]
    TimedOut,
    /// The connection failed while reading.
    #[error("the answer could not be read")]
    Failed,
}

/// Reads `body` whole: at most `limit` bytes, ending by `deadline`.
pub async fn read_body<B>(body: B, limit: usize, deadline: Instant) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // `Limited` refuses a body whose declared length is over the cap
    // before reading, and otherwise counts the frames as they come.
    let collected = tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await;
    match collected {
        Err(_) => Err(ReadError::TimedOut),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ReadError::TooLarge { limit })
        }
        Ok(Err(error)) => {
            // The peer's words are not logged, only what went wrong.
            tracing::warn!(%error, "an outside answer broke off while being read");
            Err(ReadError::Failed)
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The deadline `within` from now.
pub fn deadline_in(within: Duration) -> Instant {
    Instant::now() + within
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// How an endless peer answers.
    #[derive(Clone, Copy)]
    pub enum Endless {
        /// A chunked body as fast as the socket takes it, forever.
        Flood,
        /// A declared length of 2 GB, then as fast as the socket takes it.
        Declared,
        /// Headers, then one byte every second.
        Trickle,
    }

    /// A local HTTP server answering every request with `how`; returns its
    /// address. Each connection is served until the client goes away.
    pub async fn endless_server(how: Endless) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head: &[u8] = match how {
                        Endless::Flood => b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
                        Endless::Declared => b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2000000000\r\n\r\n",
                        Endless::Trickle => b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n",
                    };
                    if socket.write_all(head).await.is_err() {
                        return;
                    }
                    let block = vec![b'a'; 64 * 1024];
                    let chunk =
                        [format!("{:x}\r\n", block.len()).as_bytes(), &block, b"\r\n"].concat();
                    loop {
                        let sent = match how {
                            Endless::Flood => socket.write_all(&chunk).await,
                            Endless::Declared => socket.write_all(&block).await,
                            Endless::Trickle => {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                                socket.write_all(b"a").await
                            }
                        };
                        if sent.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    /// This process's resident memory, in bytes.
    pub fn resident_bytes() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    async fn fetch(
        address: std::net::SocketAddr,
        limit: usize,
        within: Duration,
    ) -> Result<Bytes, ReadError> {
        let http = reqwest::Client::new();
        let response = http
            .get(format!("http://{address}/"))
            .send()
            .await
            .expect("headers");
        let body: http::Response<reqwest::Body> = response.into();
        read_body(body.into_body(), limit, deadline_in(within)).await
    }

    #[tokio::test]
    async fn an_endless_answer_stops_at_the_cap_without_growing_memory() {
        for how in [Endless::Flood, Endless::Declared] {
            let address = endless_server(how).await;
            let before = resident_bytes();
            let started = std::time::Instant::now();
            let read = fetch(address, 1 << 20, Duration::from_secs(20)).await;
            assert_eq!(read, Err(ReadError::TooLarge { limit: 1 << 20 }));
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{:?}",
                started.elapsed()
            );
            let grown = resident_bytes().saturating_sub(before);
            // Unbounded, the 2 GB answer would be read at memory speed; the
            // margin leaves room for other tests of this process.
            assert!(grown < 256 << 20, "resident memory grew by {grown} bytes");
        }
    }

    #[tokio::test]
    async fn a_trickling_answer_ends_at_the_deadline() {
        let address = endless_server(Endless::Trickle).await;
        let started = std::time::Instant::now();
        let read = fetch(address, 1 << 20, Duration::from_millis(1500)).await;
        assert_eq!(read, Err(ReadError::TimedOut));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1400) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_within_the_cap_is_read_whole() {
        let body = http_body_util::Full::new(Bytes::from_static(b"{\"ok\":true}"));
        let read = read_body(body, 11, deadline_in(Duration::from_secs(1))).await;
        assert_eq!(read.as_deref(), Ok(&b"{\"ok\":true}"[..]));
        let over = http_body_util::Full::new(Bytes::from_static(b"{\"ok\":true}"));
        let read = read_body(over, 10, deadline_in(Duration::from_secs(1))).await;
        assert_eq!(read, Err(ReadError::TooLarge { limit: 10 }));
    }
}
