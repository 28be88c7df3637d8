//! The HTTP listener: the router served by hyper (HTTP/1.1) with the bounds a
//! server on a network needs, which `axum::serve` does not expose.
//!
//! - At most `--max-connections` open connections: past it a new connection
//!   is closed at once (and logged), so a flood of sockets cannot exhaust the
//!   node's file descriptors and starve the Raft traffic on the same port.
//! - A client has `--header-read-timeout-ms` to send a request's headers
//!   (each request's, on a kept-alive connection too), then the connection is
//!   closed: one byte a second (slowloris) holds nothing for long.
//! - With TLS, the handshake must also finish within the header-read
//!   timeout; a failed one (a peer whose certificate the CA did not sign, a
//!   client speaking plain HTTP) closes the connection and is logged.
//! - Shutdown stops accepting, lets requests in flight finish, and waits at
//!   most [`DRAIN`] for them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The bounds of one listener, and its TLS.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// `client` or `peer`, for the logs.
    pub name: &'static str,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: Bounds,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout)
        .keep_alive(true);
    let tls = bounds.tls.clone().map(TlsAcceptor::from);
    let name = bounds.name;
    let handshake_failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, or the like: back off a little.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            // Every refusal would be a log flood of its own; one in 100 is enough.
            if refused % 100 == 1 {
                tracing::warn!(
                    %remote,
                    refused,
                    limit = bounds.max_connections,
                    "{name} listener: connection limit reached; closing new connections"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(remote));
            router.clone().oneshot(req)
        });
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        let failures = handshake_failures.clone();
        let timeout = bounds.header_read_timeout;
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => match tokio::time::timeout(timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Ok(Err(e)) => {
                        handshake_failed(name, remote, &e.to_string(), &failures);
                        Ok(())
                    }
                    Err(_) => {
                        handshake_failed(name, remote, "handshake timed out", &failures);
                        Ok(())
                    }
                },
            };
            if let Err(e) = served {
                tracing::debug!(%remote, "{name} connection: {e}");
            }
            drop(slot);
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => {
            tracing::warn!("requests still in flight after {DRAIN:?}; stopping anyway");
        }
    }
}

/// Logs a failed TLS handshake: the first one and every hundredth after, so
/// a scanner cannot flood the log.
fn handshake_failed(
    name: &str,
    remote: std::net::SocketAddr,
    why: &str,
    failures: &std::sync::atomic::AtomicU64,
) {
    let n = failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n % 100 == 1 {
        tracing::warn!(%remote, failures = n, "{name} listener: refused a TLS handshake: {why}");
    }
}
