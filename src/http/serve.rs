//! The connection layer under the router: accepting TCP connections, HTTP/1
//! and HTTP/2 framing (hyper), and the limits that live below any request.
//!
//! `axum::serve` gives no header-read timeout and no connection limits, so
//! a client trickling one header line every few seconds could hold a
//! connection (and its memory) forever, and a few hundred such clients
//! could exhaust file descriptors. This module owns those defences:
//!
//! - a header-read timeout (`server.header_read_timeout_ms`): the complete
//!   request header of every HTTP/1 request, including the next one on an
//!   idle keep-alive connection, must arrive within it;
//! - a bound on open connections, overall (`server.max_connections`) and
//!   per client address (`server.max_connections_per_ip`); a connection
//!   past either bound gets a canned JSON 503 and is closed at once, so it
//!   costs no task and no parser;
//! - TLS, when `[server.tls]` is set (`http::tls`): the handshake happens
//!   here, after admission, and must finish within the header-read
//!   timeout; so must the first bytes after it. HTTP/2 and HTTP/1.1 are
//!   then served over TLS exactly as over plain TCP;
//! - graceful shutdown: on stop, no new connections; in-flight requests
//!   finish within the grace period.
//!
//! Everything per request (body size, time, rate) stays in the router's
//! layers (`http::app`).

use axum::extract::ConnectInfo;
use axum::Router;
use dashmap::DashMap;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt as _;

/// The limits of the connection layer (from `[server]`).
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
}

impl ConnectionLimits {
    pub fn from_config(config: &crate::config::ServerConfig) -> Self {
        Self {
            header_read_timeout: Duration::from_millis(config.header_read_timeout_ms),
            max_connections: config.max_connections,
            max_connections_per_ip: config.max_connections_per_ip,
        }
    }
}

/// Sent to a connection refused for being over a limit. Written with one
/// non-blocking write: a client that does not read it just gets the close.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 86\r\n\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"too many open connections; retry\"}}";

/// Open connections per client address. An entry lives while its address
/// has a connection open, so memory is bounded by `max_connections`.
#[derive(Default)]
struct PerIp {
    open: DashMap<IpAddr, usize>,
}

/// One admitted connection: releases its global permit and its per-address
/// count when the connection ends, however it ends.
struct Admission {
    _permit: OwnedSemaphorePermit,
    ip: IpAddr,
    per_ip: Arc<PerIp>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.per_ip.open.remove_if_mut(&self.ip, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

impl PerIp {
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        permit: OwnedSemaphorePermit,
    ) -> Option<Admission> {
        let mut count = self.open.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        drop(count);
        Some(Admission {
            _permit: permit,
            ip,
            per_ip: Arc::clone(self),
        })
    }
}

/// Serves `app` on `listener` until `stop` resolves, then stops accepting
/// and waits at most `grace` for open connections to finish. With `tls`,
/// every connection is a TLS connection (plain HTTP to it fails the
/// handshake).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Arc<crate::http::tls::Tls>>,
    stop: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(10));
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let per_ip = Arc::new(PerIp::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);

    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admission = Arc::clone(&permits)
            .try_acquire_owned()
            .ok()
            .and_then(|permit| per_ip.admit(peer.ip(), limits.max_connections_per_ip, permit));
        let Some(admission) = admission else {
            metrics::counter!("custodian_connections_refused_total").increment(1);
            refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service =
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            });
        let builder = Arc::clone(&builder);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let timeout = limits.header_read_timeout;
            let Some(tls) = tls else {
                // The protocol sniffing of `auto` waits for the first bytes
                // with no timer of its own: a connection that never sends
                // one would be held forever. The header timeout covers that
                // wait too.
                let mut first = [0u8; 1];
                match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                // Errors here are client-side (resets, timeouts): not ours to log loudly.
                if let Err(e) = watcher.watch(conn).await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(admission);
                return;
            };
            // A client that opens a connection and stalls the handshake is
            // the TLS form of a slow-header client: same bound.
            let stream = match tokio::time::timeout(timeout, tls.acceptor().accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    metrics::counter!("custodian_tls_handshake_failures_total", "reason" => "error")
                        .increment(1);
                    tracing::debug!(error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics::counter!("custodian_tls_handshake_failures_total", "reason" => "timeout")
                        .increment(1);
                    return;
                }
            };
            // Decrypted bytes cannot be peeked at the socket: the wait for
            // the first one is bounded inside the stream instead.
            let io = TokioIo::new(FirstByteDeadline::new(stream, timeout));
            let conn = builder.serve_connection_with_upgrades(io, service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(admission);
        });
    }
    drop(listener);
    tracing::info!("shutdown requested; finishing in-flight requests");
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining connections");
    }
}

/// A stream whose first read must deliver data before a deadline, after
/// which it reads as timed out; later reads are unbounded here (hyper's own
/// header timeout and HTTP/2 keep-alive take over once bytes flowed).
struct FirstByteDeadline<S> {
    inner: S,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> FirstByteDeadline<S> {
    fn new(inner: S, within: Duration) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(within))),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = this
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request in time",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

fn refuse(stream: TcpStream) {
    let _ = stream.try_write(OVER_LIMIT);
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_refusal_has_the_right_length() {
        let text = std::str::from_utf8(OVER_LIMIT).unwrap();
        let (_, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }

    #[tokio::test]
    async fn the_first_read_has_a_deadline_and_later_ones_do_not() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let (client, server) = tokio::io::duplex(64);
        let mut stalled = FirstByteDeadline::new(server, Duration::from_millis(50));
        let mut buf = [0u8; 4];
        let err = stalled.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        drop(client);

        let (mut client, server) = tokio::io::duplex(64);
        let mut talking = FirstByteDeadline::new(server, Duration::from_millis(50));
        client.write_all(b"GET").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 3);
        tokio::time::sleep(Duration::from_millis(80)).await;
        client.write_all(b" /").await.unwrap();
        assert_eq!(talking.read(&mut buf).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn per_ip_counts_are_released_on_drop() {
        let per_ip = Arc::new(PerIp::default());
        let sem = Arc::new(Semaphore::new(10));
        let ip: IpAddr = [10, 0, 0, 1].into();
        let a = per_ip.admit(ip, 2, Arc::clone(&sem).try_acquire_owned().unwrap());
        let b = per_ip.admit(ip, 2, Arc::clone(&sem).try_acquire_owned().unwrap());
        assert!(a.is_some() && b.is_some());
        assert!(per_ip
            .admit(ip, 2, Arc::clone(&sem).try_acquire_owned().unwrap())
            .is_none());
        drop(a);
        drop(b);
        assert!(
            per_ip.open.is_empty(),
            "entries go when their address has no connection"
        );
        assert_eq!(sem.available_permits(), 10);
    }
}
