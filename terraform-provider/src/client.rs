//! The provider's client of the controllers' HTTP/JSON API (docs/api.md): endpoints tried in
//! turn, everything bounded by the configured timeout, and every failure turned into a
//! [`ClientError`] that says what to fix. The wire types are the controller's own
//! (`tribune_controller::state::{Policy, Enclave, Host}`, `api::Problem`,
//! `api::service::ClusterView`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tribune_controller::api::problem::Problem;
use tribune_controller::api::service::ClusterView;
use tribune_controller::state::{Enclave, Host, Policy};
use tribune_tls::ClientTls;

/// Longest a single connection attempt may take before the next endpoint is tried.
const CONNECT_TIMEOUT_MAX: Duration = Duration::from_secs(3);

/// Where the cluster is and how to prove who we are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    /// `SCHEME://HOST:PORT` or `HOST:PORT` (https when a CA is given, else http).
    pub endpoints: Vec<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub token: Option<String>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The provider configuration cannot work; the message names the setting.
    #[error("{0}")]
    Config(String),
    #[error(
        "no Tribune controller answered within {after_s}s at {endpoints} (last error: {last}); check the provider's `endpoints` (or TRIBUNE_ENDPOINT) and that the cluster is running"
    )]
    Unreachable {
        endpoints: String,
        last: String,
        after_s: u64,
    },
    #[error("{endpoint}: TLS handshake failed: {detail}; {fix}")]
    Tls {
        endpoint: String,
        detail: String,
        fix: &'static str,
    },
    /// The API answered with a problem.
    #[error("{} {}: {}", problem.status, problem.title, problem.detail)]
    Api { problem: Box<Problem> },
    #[error("{endpoint}: {detail}")]
    Transport { endpoint: String, detail: String },
    #[error("the controller's answer to {what} could not be read: {detail}")]
    Decode { what: String, detail: String },
}

impl ClientError {
    /// The HTTP status of an API problem.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { problem } => Some(problem.status),
            _ => None,
        }
    }

    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ClientError::Api { problem } => Some(problem),
            _ => None,
        }
    }
}

/// How a write expects the object to stand (`If-None-Match: *` / `If-Match: "N"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    Absent,
    Version(u64),
}

pub struct Client {
    endpoints: Vec<String>,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
}

/// An error with its causes (reqwest keeps TLS failures in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// What to do about a TLS failure, read from its causes: `None` when it is not one.
fn tls_fix(detail: &str) -> Option<&'static str> {
    let d = detail.to_ascii_lowercase();
    if d.contains("unknownissuer") || d.contains("unknown issuer") || d.contains("badsignature") {
        Some(
            "the controller's certificate is not signed by the provider's `ca` (TRIBUNE_CA): point `ca` at the cluster's CA certificate",
        )
    } else if d.contains("certificate expired") || d.contains("expired") {
        Some(
            "a certificate has expired: issue a new client certificate (`tribune ca issue …`) and point `cert`/`key` at it",
        )
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        Some(
            "the controller's certificate does not name the host in `endpoints`: use the address its certificate was issued for",
        )
    } else if d.contains("alert") || d.contains("certificate") || d.contains("handshake") {
        Some(
            "check that `ca` is the cluster's CA and that `cert`/`key` were issued by it and are still valid",
        )
    } else {
        None
    }
}

impl Client {
    pub fn new(s: &Settings) -> Result<Self, ClientError> {
        if s.endpoints.is_empty() {
            return Err(ClientError::Config(
                "no endpoint: set `endpoints` in the provider block or TRIBUNE_ENDPOINT (e.g. https://127.0.0.1:7401)".into(),
            ));
        }
        let tls = match (&s.ca, &s.cert, &s.key) {
            (Some(ca), Some(cert), Some(key)) => Some(
                ClientTls::load(ca, Some((cert.as_path(), key.as_path())))
                    .map_err(|e| ClientError::Config(format!("loading `ca`/`cert`/`key`: {e}")))?,
            ),
            (Some(ca), None, None) => Some(
                ClientTls::load(ca, None)
                    .map_err(|e| ClientError::Config(format!("loading `ca`: {e}")))?,
            ),
            (None, None, None) => None,
            (None, _, _) => {
                return Err(ClientError::Config(
                    "`cert` and `key` need `ca` (the cluster's CA certificate, TRIBUNE_CA)".into(),
                ));
            }
            _ => {
                return Err(ClientError::Config(
                    "`cert` and `key` go together (TRIBUNE_CERT, TRIBUNE_KEY)".into(),
                ));
            }
        };
        if let Some(cert) = &s.cert {
            crate::certs::check_not_expired(cert).map_err(ClientError::Config)?;
        }
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| e.trim().trim_end_matches('/').to_string())
            .filter(|e| !e.is_empty())
            .map(|e| {
                if e.contains("://") {
                    e
                } else if tls.is_some() {
                    format!("https://{e}")
                } else {
                    format!("http://{e}")
                }
            })
            .collect::<Vec<_>>();
        if tls.is_none()
            && let Some(e) = endpoints.iter().find(|e| e.starts_with("https://"))
        {
            return Err(ClientError::Config(format!(
                "{e} is https: set `ca` (or TRIBUNE_CA) to the cluster's CA certificate"
            )));
        }
        let mut b = reqwest::Client::builder()
            .connect_timeout(s.timeout.min(CONNECT_TIMEOUT_MAX))
            .timeout(s.timeout);
        if let Some(t) = &tls {
            let config = t
                .rustls_config(&[b"http/1.1"])
                .map_err(|e| ClientError::Config(format!("TLS settings: {e}")))?;
            b = b.use_preconfigured_tls(config);
        }
        let http = b
            .build()
            .map_err(|e| ClientError::Config(format!("building the HTTP client: {}", chain(&e))))?;
        Ok(Self {
            endpoints,
            http,
            token: s.token.clone(),
            timeout: s.timeout,
        })
    }

    /// One request, tried on each endpoint in turn until one answers or the timeout passes.
    /// Only connection failures (nothing was sent) and 503s the server marks safe move on.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::Body>,
        pre: Option<Precondition>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let start = Instant::now();
        let mut last = String::from("none tried");
        let mut attempt = 0usize;
        while start.elapsed() < self.timeout {
            let base = &self.endpoints[attempt % self.endpoints.len()];
            attempt += 1;
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            match pre {
                Some(Precondition::Absent) => req = req.header("If-None-Match", "*"),
                Some(Precondition::Version(v)) => req = req.header("If-Match", format!("\"{v}\"")),
                None => {}
            }
            if let Some(b) = body {
                req = req
                    .header("Content-Type", "application/json")
                    .body(b.json());
            }
            let left = self.timeout.saturating_sub(start.elapsed());
            match req.timeout(left.max(Duration::from_millis(1))).send().await {
                Err(e) => {
                    let detail = chain(&e);
                    if let Some(fix) = tls_fix(&detail)
                        && !e.is_timeout()
                    {
                        return Err(ClientError::Tls {
                            endpoint: base.clone(),
                            detail,
                            fix,
                        });
                    }
                    if e.is_connect() || e.is_timeout() {
                        last = format!("{base}: {detail}");
                    } else {
                        return Err(ClientError::Transport {
                            endpoint: base.clone(),
                            detail,
                        });
                    }
                }
                Ok(resp) => {
                    let status = resp.status();
                    let bytes = resp.bytes().await.map_err(|e| ClientError::Transport {
                        endpoint: base.clone(),
                        detail: chain(&e),
                    })?;
                    if status.is_success() {
                        return Ok((status, bytes.to_vec()));
                    }
                    let problem: Problem = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Problem::new(status, "http", String::from_utf8_lossy(&bytes).into_owned())
                    });
                    let retry = status == StatusCode::SERVICE_UNAVAILABLE
                        && (method == Method::GET
                            || problem.kind.ends_with("/no-leader")
                            || problem.kind.ends_with("/not-ready"));
                    if !retry {
                        return Err(ClientError::Api {
                            problem: Box::new(problem),
                        });
                    }
                    last = format!("{base}: {}", problem.detail);
                    let wait = problem.retry_after_ms.unwrap_or(200).min(1000);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
            }
            if attempt.is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Err(ClientError::Unreachable {
            endpoints: self.endpoints.join(", "),
            last,
            after_s: self.timeout.as_secs(),
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::Body>,
        pre: Option<Precondition>,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.call(method.clone(), path, body, pre).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            what: format!("{method} {path}"),
            detail: e.to_string(),
        })
    }

    /// The policy, or `None` when there is none of that name.
    pub async fn get_policy(&self, name: &str) -> Result<Option<Policy>, ClientError> {
        not_found_is_none(
            self.json(Method::GET, &format!("/v1/policies/{name}"), None, None)
                .await,
        )
    }

    pub async fn put_policy(
        &self,
        name: &str,
        source: &str,
        pre: Precondition,
    ) -> Result<Policy, ClientError> {
        #[derive(Serialize)]
        struct Body<'a> {
            source: &'a str,
        }
        self.json(
            Method::PUT,
            &format!("/v1/policies/{name}"),
            Some(&Body { source }),
            Some(pre),
        )
        .await
    }

    /// Deletes the policy if it is still at `version`; one already gone is not an error.
    pub async fn delete_policy(&self, name: &str, version: u64) -> Result<(), ClientError> {
        match self
            .call(
                Method::DELETE,
                &format!("/v1/policies/{name}"),
                None,
                Some(Precondition::Version(version)),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The enclave, or `None` when there is none of that id.
    pub async fn get_enclave(&self, id: &str) -> Result<Option<Enclave>, ClientError> {
        not_found_is_none(
            self.json(Method::GET, &format!("/v1/enclaves/{id}"), None, None)
                .await,
        )
    }

    /// `PUT /v1/enclaves/{id}` with the enclave as the API takes it (`version` is ignored).
    /// `spec_only`: an existing enclave keeps its stored state and, on the same host, its
    /// placement epoch, whatever the body says (`?spec_only=true`).
    pub async fn put_enclave(
        &self,
        enclave: &Enclave,
        pre: Precondition,
        spec_only: bool,
    ) -> Result<Enclave, ClientError> {
        let query = if spec_only { "?spec_only=true" } else { "" };
        self.json(
            Method::PUT,
            &format!("/v1/enclaves/{}{query}", enclave.id),
            Some(enclave),
            Some(pre),
        )
        .await
    }

    /// Deletes the enclave if it is still at `version`; one already gone is not an error.
    pub async fn delete_enclave(&self, id: &str, version: u64) -> Result<(), ClientError> {
        match self
            .call(
                Method::DELETE,
                &format!("/v1/enclaves/{id}"),
                None,
                Some(Precondition::Version(version)),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn hosts(&self) -> Result<Vec<Host>, ClientError> {
        self.json(Method::GET, "/v1/hosts", None, None).await
    }

    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        self.json(Method::GET, "/v1/cluster", None, None).await
    }
}

fn not_found_is_none<T>(r: Result<T, ClientError>) -> Result<Option<T>, ClientError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A request body of any serialisable type, behind a trait object so `call` is not generic.
mod erased {
    pub trait Body: Sync {
        fn json(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize + Sync> Body for T {
        fn json(&self) -> Vec<u8> {
            // Our bodies are plain structs of strings and numbers: serialising cannot fail.
            serde_json::to_vec(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_failures_say_what_to_fix() {
        assert!(
            tls_fix("invalid peer certificate: UnknownIssuer").is_some_and(|f| f.contains("`ca`"))
        );
        assert!(
            tls_fix("received fatal alert: CertificateExpired")
                .is_some_and(|f| f.contains("expired"))
        );
        assert_eq!(tls_fix("connection refused"), None);
    }

    #[test]
    fn settings_that_cannot_work_are_refused_before_any_request() {
        let base = Settings {
            endpoints: vec!["127.0.0.1:1".into()],
            timeout: Duration::from_secs(1),
            ..Settings::default()
        };
        let no_endpoint = Settings {
            endpoints: vec![],
            ..base.clone()
        };
        assert!(
            matches!(Client::new(&no_endpoint), Err(ClientError::Config(m)) if m.contains("TRIBUNE_ENDPOINT"))
        );
        let cert_no_ca = Settings {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            ..base.clone()
        };
        assert!(
            matches!(Client::new(&cert_no_ca), Err(ClientError::Config(m)) if m.contains("need `ca`"))
        );
        let https_no_ca = Settings {
            endpoints: vec!["https://127.0.0.1:1".into()],
            ..base.clone()
        };
        assert!(
            matches!(Client::new(&https_no_ca), Err(ClientError::Config(m)) if m.contains("TRIBUNE_CA"))
        );
        let missing_ca = Settings {
            ca: Some("/nonexistent/ca.pem".into()),
            ..base
        };
        assert!(
            matches!(Client::new(&missing_ca), Err(ClientError::Config(m)) if m.contains("ca"))
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_fails_within_the_timeout() {
        // A port nobody listens on: connection refused, retried until the deadline.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let c = Client::new(&Settings {
            endpoints: vec![format!("127.0.0.1:{port}")],
            timeout: Duration::from_secs(1),
            ..Settings::default()
        })
        .unwrap();
        let start = Instant::now();
        let e = c.get_policy("p").await.unwrap_err();
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("TRIBUNE_ENDPOINT"), "{e}");
    }
}
