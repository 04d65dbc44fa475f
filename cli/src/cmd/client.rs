//! The HTTP/JSON client behind every client verb: several endpoints tried in turn, bounded
//! retries where retrying is safe, and problem details turned into messages a person can act on.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Where the dev cluster listens by default (`tribune dev`).
pub const DEFAULT_ENDPOINT: &str =
    "http://127.0.0.1:7401,http://127.0.0.1:7402,http://127.0.0.1:7403";

#[derive(Clone, Copy, Debug, Default, ValueEnum, PartialEq, Eq)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Controller API endpoints, comma-separated; tried in turn when one is down.
    #[arg(long, env = "TRIBUNE_ENDPOINT", default_value = DEFAULT_ENDPOINT)]
    pub endpoint: String,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
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
    deadline: Duration,
    pub output: Output,
}

/// Whether a retry after this answer cannot apply a write twice.
fn safe_to_retry(status: StatusCode, problem: &Value, idempotent: bool) -> bool {
    if status != StatusCode::SERVICE_UNAVAILABLE {
        return false;
    }
    let kind = problem["type"].as_str().unwrap_or("");
    idempotent || kind.ends_with("/no-leader") || kind.ends_with("/not-ready")
}

impl Client {
    pub fn new(opts: &ClientOpts) -> anyhow::Result<Self> {
        let endpoints: Vec<String> = opts
            .endpoint
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_string())
            .filter(|s| !s.is_empty())
            .map(|s| {
                if s.contains("://") {
                    s
                } else {
                    format!("http://{s}")
                }
            })
            .collect();
        if endpoints.is_empty() {
            bail!(
                "--endpoint is empty: give at least one controller address, e.g. http://127.0.0.1:7401"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            endpoints,
            http,
            deadline: Duration::from_secs(opts.timeout_secs),
            output: opts.output,
        })
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
        let idempotent = method == Method::GET;
        let start = Instant::now();
        let mut last_err;
        let mut attempt = 0usize;
        loop {
            let base = &self.endpoints[attempt % self.endpoints.len()];
            attempt += 1;
            let mut req = self.http.request(method.clone(), format!("{base}{path}"));
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            match req.send().await {
                Err(e) if e.is_connect() || (idempotent && e.is_timeout()) => {
                    last_err = format!("{base}: {e}");
                }
                Err(e) => {
                    return Err(ApiFailure {
                        problem: Value::Null,
                        message: format!("{base}: {e}"),
                    });
                }
                Ok(resp) => {
                    let status = resp.status();
                    let hdrs = resp.headers().clone();
                    let text = resp.text().await.unwrap_or_default();
                    let value: Value = if text.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_str(&text).unwrap_or(Value::String(text.clone()))
                    };
                    if status.is_success() {
                        return Ok((status, hdrs, value));
                    }
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

    /// Prints JSON or a table with the given columns (JSON pointer per column).
    pub fn print(&self, value: &Value, columns: &[(&str, &str)]) {
        match self.output {
            Output::Json => println!(
                "{}",
                serde_json::to_string_pretty(value).unwrap_or_default()
            ),
            Output::Table => {
                let rows: Vec<&Value> = match value {
                    Value::Array(a) => a.iter().collect(),
                    v => vec![v],
                };
                let mut t = comfy_table::Table::new();
                t.load_preset(comfy_table::presets::NOTHING);
                t.set_header(columns.iter().map(|(h, _)| *h));
                for r in rows {
                    t.add_row(columns.iter().map(|(_, ptr)| cell(r.pointer(ptr))));
                }
                println!("{t}");
            }
        }
    }
}

pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(m)) if m.is_empty() => "-".into(),
        Some(v) => v.to_string(),
    }
}

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
