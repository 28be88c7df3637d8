//! One virtual client's HTTP/1.1 keep-alive connection, on hyper's low-level
//! `client::conn::http1`: no pool, no shared lock, one request in flight, so a
//! connection is exactly one closed loop. After any error the connection is
//! dropped and the next request opens a new one.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::args::{Endpoint, Tls};
use crate::target::Response;

/// A request that got no HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{}", chain(.0))]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
}

impl TransportError {
    /// Short name for the report's breakdown.
    pub fn kind(&self) -> &'static str {
        match self {
            TransportError::Connect(_) => "connect",
            TransportError::Timeout(_) => "timeout",
            TransportError::Http(_) => "io",
            TransportError::Request(_) => "request",
        }
    }
}

/// hyper's own message is terse ("connection error"); the cause is in its sources.
fn chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

pub struct Conn {
    endpoint: Endpoint,
    tls: Option<Tls>,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Drives the connection's I/O; aborted when the connection is dropped.
    driver: Option<JoinHandle<()>>,
    /// Connections opened so far (1 for a healthy run).
    pub opened: u64,
}

impl Conn {
    /// A connection to `endpoint`; `tls` is used for an https:// one.
    pub fn new(endpoint: Endpoint, tls: Option<Tls>) -> Conn {
        Conn {
            endpoint,
            tls,
            sender: None,
            driver: None,
            opened: 0,
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `req` and reads the whole body, all within `timeout`.
    pub async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, TransportError> {
        match tokio::time::timeout(timeout, self.exchange(req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                self.close();
                Err(e)
            }
            Err(_) => {
                self.close();
                Err(TransportError::Timeout(timeout))
            }
        }
    }

    async fn exchange(&mut self, req: Request<Full<Bytes>>) -> Result<Response, TransportError> {
        let sender = self.ready().await?;
        let (parts, body) = sender.send_request(req).await?.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Response {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// The open connection, or a new one if there is none or the server closed it
    /// while idle (not an error: keep-alive connections may be closed at any time).
    async fn ready(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, TransportError> {
        if let Some(mut s) = self.sender.take() {
            if s.ready().await.is_ok() {
                return Ok(self.sender.insert(s));
            }
        }
        self.close();
        let mut s = self.connect().await?;
        s.ready().await?;
        Ok(self.sender.insert(s))
    }

    async fn connect(&mut self) -> Result<SendRequest<Full<Bytes>>, TransportError> {
        let ep = &self.endpoint;
        let stream = TcpStream::connect((ep.host.as_str(), ep.port))
            .await
            .map_err(|e| TransportError::Connect(format!("{}: {e}", ep.authority)))?;
        // Small requests in a closed loop: never wait for Nagle.
        stream
            .set_nodelay(true)
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        // The connection's errors surface on the request that was in flight.
        let (sender, driver) = match (&self.tls, ep.tls) {
            (Some(Tls(tls)), true) => {
                let name = rustls::pki_types::ServerName::try_from(ep.host.clone())
                    .map_err(|e| TransportError::Connect(format!("{}: {e}", ep.authority)))?;
                let stream = tls
                    .connect(name, stream)
                    .await
                    .map_err(|e| TransportError::Connect(format!("{}: TLS: {e}", ep.authority)))?;
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                (sender, tokio::spawn(async move { drop(conn.await) }))
            }
            (None, true) => {
                return Err(TransportError::Connect(format!(
                    "{}: https without --cacert",
                    ep.authority
                )))
            }
            (_, false) => {
                let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
                (sender, tokio::spawn(async move { drop(conn.await) }))
            }
        };
        self.driver = Some(driver);
        self.opened += 1;
        Ok(sender)
    }

    fn close(&mut self) {
        self.sender = None;
        if let Some(driver) = self.driver.take() {
            driver.abort();
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_a_connect_error() {
        // Bind then drop to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut conn = Conn::new(ep, None);
        let req = Request::new(Full::new(Bytes::new()));
        let err = conn.send(req, Duration::from_secs(2)).await.unwrap_err();
        assert_eq!(err.kind(), "connect", "{err}");
    }

    #[tokio::test]
    async fn keeps_one_connection_alive() {
        use axum::routing::get;
        let app = axum::Router::new().route("/x", get(|| async { "hi" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let ep = Endpoint::parse(&format!("http://{addr}")).unwrap();
        let mut conn = Conn::new(ep.clone(), None);
        for _ in 0..5 {
            let req = Request::builder()
                .uri("/x")
                .header(hyper::header::HOST, ep.authority.as_str())
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = conn.send(req, Duration::from_secs(2)).await.unwrap();
            assert_eq!(resp.status, 200);
            assert_eq!(&resp.body[..], b"hi");
        }
        assert_eq!(conn.opened, 1);
        server.abort();
    }
}
