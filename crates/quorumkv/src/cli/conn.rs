//! The CLI's connection to a cluster: the endpoints, TLS and token, and one
//! request tried on endpoint after endpoint until one answers.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::cli::CliError;

/// Where the cluster is and how to talk to it (every subcommand takes these).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnArgs {
    /// Client URLs of the nodes, tried in order until one answers.
    #[arg(
        long,
        global = true,
        env = "QUORUMKV_ENDPOINTS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003"
    )]
    pub endpoints: Vec<String>,

    /// CA certificate to trust for https:// endpoints.
    #[arg(long, global = true, env = "QUORUMKV_CACERT")]
    pub cacert: Option<PathBuf>,

    /// File holding a client token (with --auth-file on the nodes).
    #[arg(long, global = true, env = "QUORUMKV_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// Bound on each request (e.g. 10s).
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// `text` for people, `json` for scripts (one JSON document per answer).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A node's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
    /// The endpoint that answered.
    pub endpoint: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Result<serde_json::Value, CliError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| CliError::Failed(format!("{}: not JSON: {e}", self.endpoint)))
    }

    /// The API error this answer carries: `(code, message)`.
    fn error(&self) -> (String, String) {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or("").to_string();
        let message = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned());
        (code, message)
    }

    /// This answer if 2xx; else the error it names, with its exit code.
    pub fn ok(self) -> Result<Answer, CliError> {
        if self.status.is_success() {
            return Ok(self);
        }
        let (code, message) = self.error();
        Err(match self.status.as_u16() {
            404 => CliError::NotFound(message),
            412 => CliError::PreconditionFailed(message),
            // A timeout leaves a write's outcome unknown, as a 503/504 does.
            408 | 503 | 504 => CliError::Unavailable(message),
            400 | 405 | 413 | 422 => CliError::Usage(message),
            401 | 403 => CliError::Denied(message),
            _ => CliError::Failed(format!("{} {code}: {message}", self.status)),
        })
    }
}

/// Requests to whichever endpoint answers.
pub struct Conn {
    http: reqwest::Client,
    endpoints: Vec<String>,
    token: Option<String>,
    pub output: Output,
}

/// Whether a request may go to the next endpoint after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, and writes with an idempotency key: after any failure.
    Always,
    /// Other writes: only when it was never sent (connection refused).
    IfNotSent,
}

impl Conn {
    pub fn new(args: &ConnArgs) -> Result<Conn, CliError> {
        if args.endpoints.is_empty() {
            return Err(CliError::Usage("--endpoints is empty".into()));
        }
        let mut http = reqwest::Client::builder()
            .timeout(args.timeout)
            .connect_timeout(args.timeout.min(Duration::from_secs(3)))
            .no_proxy();
        if let Some(ca) = &args.cacert {
            let pem = std::fs::read(ca)
                .map_err(|e| CliError::Usage(format!("--cacert {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| CliError::Usage(format!("--cacert {}: {e}", ca.display())))?;
            http = http
                .tls_built_in_root_certs(false)
                .add_root_certificate(cert);
        }
        let token = match &args.token_file {
            None => None,
            Some(f) => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| CliError::Usage(format!("--token-file {}: {e}", f.display())))?
                    .trim()
                    .to_string(),
            ),
        };
        let http = http
            .build()
            .map_err(|e| CliError::Failed(format!("HTTP client: {e}")))?;
        Ok(Conn {
            http,
            endpoints: args
                .endpoints
                .iter()
                .map(|e| e.trim_end_matches('/').to_string())
                .collect(),
            token,
            output: args.output,
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// A request builder for `endpoint` + `path`, with the token.
    pub fn request(&self, method: Method, endpoint: &str, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{endpoint}{path}"));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// [`Conn::send`], then the 2xx answer's JSON body (else its error).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        retry: Retry,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<serde_json::Value, CliError> {
        self.send(method, path, retry, build).await?.ok()?.json()
    }

    /// Sends the request `build` makes to each endpoint in turn until one
    /// answers with something other than "no leader / shutting down", as
    /// `retry` allows.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        retry: Retry,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Answer, CliError> {
        let mut last = String::new();
        for endpoint in &self.endpoints {
            let req = build(self.request(method.clone(), endpoint, path));
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let body = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) if retry == Retry::Always => {
                            last = format!("{endpoint}: {e}");
                            continue;
                        }
                        Err(e) => {
                            return Err(CliError::Unavailable(format!(
                                "{endpoint}: {e}; the outcome is unknown"
                            )))
                        }
                    };
                    let answer = Answer {
                        status,
                        headers,
                        body,
                        endpoint: endpoint.clone(),
                    };
                    let (code, message) = answer.error();
                    // No leader found: nothing was proposed, any request may
                    // go on. A node shutting down may have proposed a write.
                    let node_down =
                        code == "no_leader" || (retry == Retry::Always && code == "shutting_down");
                    if status == StatusCode::SERVICE_UNAVAILABLE && node_down {
                        last = format!("{endpoint}: {message}");
                        continue;
                    }
                    return Ok(answer);
                }
                Err(e) if e.is_connect() || retry == Retry::Always => {
                    last = format!("{endpoint}: {e}");
                }
                Err(e) => {
                    return Err(CliError::Unavailable(format!(
                        "{endpoint}: {e}; the outcome is unknown"
                    )))
                }
            }
        }
        Err(CliError::Unavailable(format!(
            "no endpoint answered (last: {last})"
        )))
    }
}
