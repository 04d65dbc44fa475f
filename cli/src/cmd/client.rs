//! The HTTP/JSON client behind every client verb: several endpoints tried in turn, bounded
//! retries where retrying is safe, and problem details turned into messages a person can act on.
//! Writes go to the leader once it is known (learned from `GET /v1/cluster`, forgotten when it
//! fails); policy and enclave writes carry an `Idempotency-Key` the client makes up, so an
//! outcome-unknown write (a timeout, a 503 `outcome-unknown`, a dropped connection) is retried
//! under it and applies once.
//!
//! TLS: `--ca` (the cluster's CA) turns it on, `--cert`/`--key` present a client certificate.
//! With no `--endpoint` at all, the client config file that `tribune dev` writes (see
//! [`client_config_path`]) supplies the endpoints and the TLS files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tribune_tls::ClientTls;

use super::output::{self, Format};
use super::units::{self, Unit};

/// Where the dev cluster listens by default (`tribune dev`); the scheme is https when a CA is
/// known, http otherwise.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403";

/// Environment variable naming the client config file (default: [`client_config_path`]).
pub const CONFIG_ENV: &str = "TRIBUNE_CONFIG";

/// What `tribune dev` writes for the CLI: where its cluster is and the TLS files to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfigFile {
    pub endpoint: String,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
}

/// `$TRIBUNE_CONFIG`, else `$XDG_CONFIG_HOME/tribune/dev.toml`, else `~/.config/tribune/dev.toml`.
pub fn client_config_path() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env(CONFIG_ENV) {
        return Some(p);
    }
    let base = env("XDG_CONFIG_HOME").or_else(|| env("HOME").map(|h| h.join(".config")))?;
    Some(base.join("tribune").join("dev.toml"))
}

/// A reqwest client builder that speaks TLS with `tls` (HTTP/1.1, as without TLS).
pub fn http_builder(tls: Option<&ClientTls>) -> anyhow::Result<reqwest::ClientBuilder> {
    let b = reqwest::Client::builder();
    Ok(match tls {
        Some(t) => b.use_preconfigured_tls(t.rustls_config(&[b"http/1.1"])?),
        None => b,
    })
}

/// An error with its causes, one after another (reqwest hides TLS failures in the sources).
pub fn error_chain(e: &dyn std::error::Error) -> String {
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

/// Whether a request failed in TLS (a certificate or handshake error: retrying will not help).
/// The rustls error is wrapped (`io::Error`, boxed connector errors) in ways that do not always
/// downcast, so the causes' messages are read too — never the top error, which holds the URL.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = e.source();
    while let Some(c) = cur {
        let typed = c.is::<tribune_tls::rustls::Error>()
            || c.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<tribune_tls::rustls::Error>());
        let m = c.to_string().to_ascii_lowercase();
        if typed
            || m.contains("peer certificate")
            || m.contains("fatal alert")
            || m.contains("handshake")
        {
            return true;
        }
        cur = c.source();
    }
    false
}

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Controller API endpoints, comma-separated; tried in turn when one is down. Without a
    /// scheme: https when a CA is given, else http. Default: the cluster of `tribune dev` (from
    /// the file it writes, see TRIBUNE_CONFIG), else 127.0.0.1:7401-7403.
    #[arg(long, env = "TRIBUNE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// CA certificate(s) (PEM) to verify controllers with; turns TLS on.
    #[arg(long, env = "TRIBUNE_CA")]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) to present, from `tribune ca issue admin|operator|auditor|tenant NAME`.
    #[arg(long, env = "TRIBUNE_CERT")]
    pub cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    #[arg(long, env = "TRIBUNE_KEY")]
    pub key: Option<PathBuf>,
    /// Bearer token (`tribune token create`) to authenticate with instead of a certificate.
    /// Prefer the environment variable: a flag shows in the process list.
    #[arg(long, env = "TRIBUNE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Give up after this many seconds of retrying (no leader, controller down).
    #[arg(long, default_value_t = 10)]
    pub timeout_secs: u64,
}

/// A failed request, with the server's problem details when it sent some.
#[derive(Debug)]
pub struct ApiFailure {
    pub problem: Value,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiFailure {}

pub struct Client {
    endpoints: Vec<String>,
    http: reqwest::Client,
    token: Option<String>,
    deadline: Duration,
    /// The `-o/--output` format the verb prints in.
    pub output: Format,
    /// The leader's endpoint, once learned (`/v1/cluster`): writes go to it directly instead of
    /// being forwarded by whichever controller answers. Forgotten when it fails.
    leader: std::sync::Mutex<Option<String>>,
}

/// Whether a retry after this answer cannot apply a write twice.
fn safe_to_retry(status: StatusCode, problem: &Value, idempotent: bool) -> bool {
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return false;
    }
    let kind = problem["type"].as_str().unwrap_or("");
    idempotent || kind.ends_with("/no-leader") || kind.ends_with("/not-ready")
}

/// Whether the write `method path` takes an `Idempotency-Key` (docs/api.md): then the client
/// sends one it made up, and retries an outcome-unknown write under it.
pub fn keyed_write(method: &Method, path: &str) -> bool {
    let path = path.split('?').next().unwrap_or(path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    matches!(
        (method.as_str(), segments.as_slice()),
        ("PUT" | "DELETE", ["v1", "policies" | "enclaves", _]) | ("POST", ["v1", "enclaves"])
    )
}

/// A fresh idempotency key: this process, the time, and a counter (unique per caller).
pub fn new_idempotency_key() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "tribune-{:x}-{nanos:x}-{:x}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// The leader's endpoint from a `/v1/cluster` answer, with `like`'s scheme.
fn leader_endpoint(cluster: &Value, like: &str) -> Option<String> {
    let leader = cluster["leader"].as_u64()?;
    let address = cluster["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"].as_u64() == Some(leader))?["address"]
        .as_str()?;
    if address.contains("://") {
        return Some(address.trim_end_matches('/').to_string());
    }
    let scheme = like.split_once("://").map_or("http", |(s, _)| s);
    Some(format!("{scheme}://{address}"))
}

impl ClientOpts {
    /// The endpoints (with their scheme) and the TLS settings to reach them.
    pub fn resolve(&self) -> anyhow::Result<(Vec<String>, Option<ClientTls>)> {
        let mut endpoint = self.endpoint.clone();
        let (mut ca, mut cert, mut key) = (self.ca.clone(), self.cert.clone(), self.key.clone());
        // The config `tribune dev` wrote applies with no --endpoint, and also with an --endpoint
        // that names one of its controllers (then its CA and certificate are the right ones).
        if (endpoint.is_none() || ca.is_none())
            && let Some(path) = client_config_path()
            && path.exists()
        {
            let file = read_client_config(&path)?;
            let applies = endpoint
                .as_deref()
                .is_none_or(|given| endpoints_overlap(given, &file.endpoint));
            if !applies {
                // Another cluster: nothing of this file is used.
            } else if ca.is_none() {
                endpoint.get_or_insert(file.endpoint);
                ca = file.ca;
                if cert.is_none() && key.is_none() {
                    (cert, key) = (file.cert, file.key);
                }
            } else {
                endpoint.get_or_insert(file.endpoint);
            }
        }
        let tls = match (ca, cert, key) {
            (Some(ca), Some(cert), Some(key)) => {
                Some(ClientTls::load(&ca, Some((cert.as_path(), key.as_path())))?)
            }
            (Some(ca), None, None) => Some(ClientTls::load(&ca, None)?),
            (None, None, None) => None,
            (None, _, _) => bail!("--cert and --key need --ca (the cluster's CA certificate)"),
            _ => bail!("--cert and --key go together"),
        };
        let endpoints = parse_endpoints(
            endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT),
            tls.is_some(),
        )?;
        Ok((endpoints, tls))
    }
}

/// `HOST:PORT` of an endpoint, without scheme or trailing slash.
fn host_port(e: &str) -> &str {
    let e = e.trim().trim_end_matches('/');
    e.split_once("://").map_or(e, |(_, rest)| rest)
}

/// Whether any endpoint in the comma-separated `given` is one of `known`'s.
fn endpoints_overlap(given: &str, known: &str) -> bool {
    let known: Vec<&str> = known.split(',').map(host_port).collect();
    given
        .split(',')
        .map(host_port)
        .any(|g| !g.is_empty() && known.contains(&g))
}

fn read_client_config(path: &Path) -> anyhow::Result<ClientConfigFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the client config {}", path.display()))?;
    toml::from_str(&text).with_context(|| {
        format!(
            "parsing the client config {} (written by `tribune dev`; remove it or pass --endpoint)",
            path.display()
        )
    })
}

/// Splits a comma-separated endpoint list; a bare `HOST:PORT` gets https with TLS, else http.
pub fn parse_endpoints(list: &str, tls: bool) -> anyhow::Result<Vec<String>> {
    let endpoints: Vec<String> = list
        .split(',')
        .map(|s| s.trim().trim_end_matches('/').to_string())
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s
            } else if tls {
                format!("https://{s}")
            } else {
                format!("http://{s}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        bail!(
            "--endpoint is empty: give at least one controller address, e.g. https://127.0.0.1:7401"
        );
    }
    if !tls && let Some(e) = endpoints.iter().find(|e| e.starts_with("https://")) {
        bail!(
            "{e} is https: pass --ca (or set TRIBUNE_CA) with the cluster's CA certificate (`tribune dev` prints it)"
        );
    }
    Ok(endpoints)
}

impl Client {
    pub fn new(opts: &ClientOpts, output: Format) -> anyhow::Result<Self> {
        let (endpoints, tls) = opts.resolve()?;
        let http = http_builder(tls.as_ref())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            endpoints,
            http,
            token: opts.token.clone(),
            deadline: Duration::from_secs(opts.timeout_secs),
            output,
            leader: std::sync::Mutex::new(None),
        })
    }

    /// The leader's endpoint: remembered, else asked of the controllers (`GET /v1/cluster`,
    /// one try each, short timeouts). `None` when no controller says (then writes go to the
    /// endpoints in turn and are forwarded).
    pub async fn leader(&self) -> Option<String> {
        if let Some(l) = self.leader.lock().ok()?.clone() {
            return Some(l);
        }
        for base in &self.endpoints {
            let mut req = self
                .http
                .get(format!("{base}/v1/cluster"))
                .timeout(Duration::from_secs(2));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            let Ok(r) = req.send().await else { continue };
            if !r.status().is_success() {
                continue;
            }
            let Ok(v) = r.json::<Value>().await else {
                continue;
            };
            if let Some(l) = leader_endpoint(&v, base) {
                if let Ok(mut known) = self.leader.lock() {
                    *known = Some(l.clone());
                }
                return Some(l);
            }
        }
        None
    }

    fn forget_leader(&self) {
        if let Ok(mut known) = self.leader.lock() {
            *known = None;
        }
    }

    /// Sends a request. Connection failures move on to the next endpoint; 503s are retried
    /// while safe (reads, or writes the server says were not applied) until the deadline.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Value), ApiFailure> {
        let (status, hdrs, bytes) = self.call_bytes(method, path, body, headers).await?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok((status, hdrs, value))
    }

    /// [`Client::call`] for a response that is not JSON (a backup file): the body's bytes.
    pub async fn call_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(StatusCode, reqwest::header::HeaderMap, Vec<u8>), ApiFailure> {
        // A keyed write is safe to retry whatever happened to it: the controllers apply it
        // once and answer a repeat with the first outcome.
        let key = (keyed_write(&method, path)
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("idempotency-key")))
        .then(new_idempotency_key);
        let idempotent = method == Method::GET || key.is_some();
        let write = method != Method::GET;
        let start = Instant::now();
        let mut last_err;
        let mut attempt = 0usize;
        loop {
            // A write goes to the leader when it is known, else to the endpoints in turn.
            let leader = if write { self.leader().await } else { None };
            let base = match &leader {
                Some(l) => l.as_str(),
                None => {
                    attempt += 1;
                    self.endpoints[(attempt - 1) % self.endpoints.len()].as_str()
                }
            };
            if leader.is_some() {
                attempt += 1;
            }
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(t) = &self.token {
                req = req.bearer_auth(t);
            }
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(k) = &key {
                req = req.header("idempotency-key", k);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Err(e) if is_tls_failure(&e) => {
                    return Err(ApiFailure {
                        problem: Value::Null,
                        message: format!(
                            "{base}: TLS handshake failed: {}; is --ca the cluster's CA, and was --cert issued by it?",
                            error_chain(&e)
                        ),
                    });
                }
                Err(e) if e.is_connect() || (idempotent && (e.is_timeout() || key.is_some())) => {
                    last_err = format!("{base}: {}", error_chain(&e));
                    if leader.is_some() {
                        self.forget_leader();
                    }
                }
                Err(e) => {
                    return Err(ApiFailure {
                        problem: Value::Null,
                        message: format!("{base}: {}", error_chain(&e)),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let hdrs = resp.headers().clone();
                    let bytes = match resp.bytes().await {
                        Ok(b) => b.to_vec(),
                        Err(e) => {
                            return Err(ApiFailure {
                                problem: Value::Null,
                                message: format!("{base}: reading the answer: {}", error_chain(&e)),
                            });
                        }
                    };
                    if status.is_success() {
                        return Ok((status, hdrs, bytes));
                    }
                    let text = String::from_utf8_lossy(&bytes).into_owned();
                    let value: Value = if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
                    };
                    if !safe_to_retry(status, &value, idempotent)
                        || start.elapsed() >= self.deadline
                    {
                        let detail = value["detail"]
                            .as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| text.clone());
                        return Err(ApiFailure {
                            message: format!(
                                "{} {}: {detail}",
                                status.as_u16(),
                                status.canonical_reason().unwrap_or("")
                            ),
                            problem: value,
                        });
                    }
                    last_err = value["detail"]
                        .as_str()
                        .unwrap_or("unavailable")
                        .to_string();
                    if leader.is_some() {
                        // It may no longer lead: ask again.
                        self.forget_leader();
                    }
                    let wait_ms = value["retry_after_ms"].as_u64().unwrap_or(200).min(1000);
                    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                }
            }
            if start.elapsed() >= self.deadline {
                return Err(ApiFailure {
                    problem: Value::Null,
                    message: format!(
                        "no controller answered within {}s (last error: {last_err}); is the cluster running? (`tribune dev` starts one)",
                        self.deadline.as_secs()
                    ),
                });
            }
            if attempt.is_multiple_of(self.endpoints.len()) {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None, &[])
            .await
            .map(|(_, _, v)| v)
            .map_err(|e| anyhow!(e))
    }

    /// Prints the JSON or YAML document, or a table with the given columns (JSON pointer per
    /// column, values as they are).
    pub fn print(&self, value: &Value, columns: &[(&str, &str)]) {
        let columns: Vec<Column> = columns.iter().map(|&(h, p)| Column::new(h, p)).collect();
        self.print_columns(value, &columns);
    }

    /// Prints the JSON or YAML document, or a table of `columns` (human units; the wide
    /// columns with `-o wide` only).
    pub fn print_columns(&self, value: &Value, columns: &[Column]) {
        match output::structured(self.output, value) {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => {
                // A JSON value always serialises; anything else is a bug worth seeing.
                eprintln!("error: printing the answer: {e:#}");
                return;
            }
        }
        println!("{}", table(value, columns, self.output, units::now_ms()));
    }
}

/// One column of a table: its header, where its value is in each row (a JSON pointer), how
/// it is shown, and whether only `-o wide` shows it.
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    pub header: &'a str,
    pub pointer: &'a str,
    pub unit: Unit,
    pub wide: bool,
}

impl<'a> Column<'a> {
    pub const fn new(header: &'a str, pointer: &'a str) -> Self {
        Self {
            header,
            pointer,
            unit: Unit::Raw,
            wide: false,
        }
    }

    /// Shown in `unit` (`250m`, `256Mi`, `3m12s`) in tables.
    pub const fn unit(self, unit: Unit) -> Self {
        Self { unit, ..self }
    }

    /// Shown with `-o wide` only.
    pub const fn wide(self) -> Self {
        Self { wide: true, ..self }
    }
}

/// `value` (one row, or an array of rows) as a table of `columns` for `format` (the wide
/// columns only with `-o wide`), times shown relative to `now_ms`.
pub fn table(value: &Value, columns: &[Column], format: Format, now_ms: i64) -> String {
    let rows: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    let shown: Vec<&Column> = columns
        .iter()
        .filter(|c| !c.wide || format.is_wide())
        .collect();
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING);
    t.set_header(shown.iter().map(|c| c.header));
    for r in rows {
        t.add_row(shown.iter().map(|c| {
            let v = r.pointer(c.pointer);
            v.and_then(|v| c.unit.show(v, now_ms))
                .unwrap_or_else(|| cell(v))
        }));
    }
    t.to_string()
}

/// A JSON value as one table cell, escaped for the terminal ([`super::output`]): strings
/// bare, other values as JSON (which escapes C0 controls but not DEL or C1, so it goes through
/// the escaper too).
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => output::cell(s).into_owned(),
        Some(Value::Object(m)) if m.is_empty() => "-".into(),
        Some(v) => output::cell(&v.to_string()).into_owned(),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_units_and_wide_columns_only_when_wide() {
        let now = 1_700_000_000_000i64;
        let rows = serde_json::json!([
            {"id": "e1", "cpu": 250, "mem": 268_435_456u64, "at": now - 192_000, "rate": 10_000_000},
            {"id": "e2", "cpu": 2000, "mem": null, "at": 0, "rate": 1_500_000_000u64},
        ]);
        let columns = [
            Column::new("ID", "/id"),
            Column::new("CPU", "/cpu").unit(Unit::Cpu),
            Column::new("MEMORY", "/mem").unit(Unit::Bytes),
            Column::new("AGE", "/at").unit(Unit::Age),
            Column::new("EGRESS", "/rate").unit(Unit::Bits).wide(),
        ];
        let narrow = table(&rows, &columns, Format::Table, now);
        let lines: Vec<Vec<&str>> = narrow
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0], ["ID", "CPU", "MEMORY", "AGE"], "{narrow}");
        assert_eq!(lines[1], ["e1", "250m", "256Mi", "3m12s"], "{narrow}");
        assert_eq!(lines[2], ["e2", "2", "-", "-"], "{narrow}");
        let wide = table(&rows, &columns, Format::Wide, now);
        let lines: Vec<Vec<&str>> = wide
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines[0].last(), Some(&"EGRESS"), "{wide}");
        assert_eq!(lines[1].last(), Some(&"10Mbit"), "{wide}");
        assert_eq!(lines[2].last(), Some(&"1.5Gbit"), "{wide}");
    }

    #[test]
    fn only_policy_and_enclave_writes_are_keyed() {
        assert!(keyed_write(&Method::PUT, "/v1/policies/p1"));
        assert!(keyed_write(&Method::DELETE, "/v1/policies/p1"));
        assert!(keyed_write(&Method::PUT, "/v1/enclaves/e1?spec_only=true"));
        assert!(keyed_write(&Method::DELETE, "/v1/enclaves/e1"));
        assert!(keyed_write(&Method::POST, "/v1/enclaves"));
        assert!(!keyed_write(&Method::POST, "/v1/policies/plan"));
        assert!(!keyed_write(&Method::GET, "/v1/policies/p1"));
        assert!(!keyed_write(&Method::POST, "/v1/tokens"));
        assert!(!keyed_write(&Method::POST, "/v1/hosts/h1/cordon"));
        assert!(!keyed_write(&Method::PUT, "/v1/hosts/h1"));
        assert_ne!(new_idempotency_key(), new_idempotency_key());
    }

    #[test]
    fn the_leader_endpoint_comes_from_the_cluster_view() {
        let v = serde_json::json!({"leader": 2, "members": [
            {"id": 1, "address": "10.0.0.1:7401"}, {"id": 2, "address": "10.0.0.2:7401"}]});
        assert_eq!(
            leader_endpoint(&v, "https://10.0.0.1:7401").as_deref(),
            Some("https://10.0.0.2:7401")
        );
        assert_eq!(
            leader_endpoint(&v, "10.0.0.1:7401").as_deref(),
            Some("http://10.0.0.2:7401")
        );
        let none = serde_json::json!({"leader": null, "members": []});
        assert_eq!(leader_endpoint(&none, "http://x:1"), None);
    }

    #[test]
    fn an_endpoint_of_the_dev_cluster_is_recognised_with_or_without_scheme() {
        let dev = "127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403";
        assert!(endpoints_overlap("https://127.0.0.1:7401", dev));
        assert!(endpoints_overlap("127.0.0.1:7402/", dev));
        assert!(endpoints_overlap("10.0.0.1:7401, 127.0.0.1:7403", dev));
        assert!(!endpoints_overlap("https://127.0.0.1:7404", dev));
        assert!(!endpoints_overlap("10.0.0.1:7401", dev));
        assert!(!endpoints_overlap("", dev));
    }
}
