//! The OpenAPI document (`GET /v1/openapi.json`, `control-plane/src/api/openapi.rs`) against a
//! live mTLS controller:
//!
//! - every route the router serves (`http::route_paths`, the list the router is built from) is
//!   documented, every documented path is served, and on each path exactly the documented
//!   methods are served (probed: an undocumented method answers 405);
//! - every documented operation is called, with valid and invalid requests (no credentials, a
//!   role that may not, bad bodies and parameters, unknown ids, version conflicts, the request
//!   bounds), and every answer's status must be one the document lists for that operation;
//!   every JSON body answered (2xx and problem details) must validate against the documented
//!   schema (`jsonschema`);
//! - the document itself is valid OpenAPI 3.1 (`openapi-spec-validator` from PyPI, installed by
//!   `scripts/test`; `skipped: …` without it).

mod common;
#[path = "openapi/exercise.rs"]
mod exercise;

use std::collections::{BTreeMap, BTreeSet};

use common::Cluster;
use reqwest::Method;
use serde_json::{Value, json};
use tribune_controller::api::{http, openapi};

const POLICY: &str = "policy \"p1\" {\n  limit { cpu = 2 }\n}\n";
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// One request to make.
struct Call<'a> {
    method: &'a str,
    /// The documented path (OpenAPI template).
    template: &'a str,
    /// The request target.
    target: String,
    body: Option<String>,
    headers: Vec<(String, String)>,
    /// `None`: the harness's admin certificate; `Some(t)`: no certificate, this bearer token
    /// (empty: no credentials at all).
    bearer: Option<String>,
}

fn call<'a>(method: &'a str, template: &'a str, target: &str) -> Call<'a> {
    Call {
        method,
        template,
        target: target.to_string(),
        body: None,
        headers: Vec::new(),
        bearer: None,
    }
}

impl Call<'_> {
    fn json(mut self, v: Value) -> Self {
        self.body = Some(v.to_string());
        self
    }
    fn raw(mut self, body: &str) -> Self {
        self.body = Some(body.to_string());
        self
    }
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    fn anonymous(mut self) -> Self {
        self.bearer = Some(String::new());
        self
    }
    fn token(mut self, t: &str) -> Self {
        self.bearer = Some(t.to_string());
        self
    }
}

/// Sends calls and holds each answer to the document.
struct Checker<'c> {
    c: &'c Cluster,
    node: u64,
    /// A client with the CA but no certificate.
    bare: reqwest::Client,
    doc: Value,
    /// (method, template) → statuses seen.
    seen: BTreeMap<(String, String), BTreeSet<u16>>,
    failures: Vec<String>,
}

impl Checker<'_> {
    fn operation(&self, method: &str, template: &str) -> Option<&Value> {
        self.doc["paths"][template].get(method)
    }

    /// `schema` as a standalone JSON Schema (2020-12) whose `#/components/…` references
    /// resolve in the document's components.
    fn validate(&mut self, what: &str, schema: &Value, body: &Value) {
        let root = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "components": self.doc["components"],
            "allOf": [schema],
        });
        match jsonschema::validator_for(&root) {
            Err(e) => self
                .failures
                .push(format!("{what}: documented schema does not compile: {e}")),
            Ok(v) => {
                let errors: Vec<String> = v
                    .iter_errors(body)
                    .take(5)
                    .map(|e| format!("{} at {}", e, e.instance_path()))
                    .collect();
                if !errors.is_empty() {
                    self.failures.push(format!(
                        "{what}: body does not match the documented schema: {}; body: {}",
                        errors.join("; "),
                        truncate(&body.to_string())
                    ));
                }
            }
        }
    }

    async fn send(&mut self, call: Call<'_>) -> (u16, Value) {
        let method = Method::from_bytes(call.method.to_uppercase().as_bytes()).expect("method");
        let url = self.c.url(self.node, &call.target);
        let client = if call.bearer.is_some() {
            &self.bare
        } else {
            &self.c.http
        };
        let mut req = client.request(method, url);
        if let Some(t) = call.bearer.as_deref().filter(|t| !t.is_empty()) {
            req = req.bearer_auth(t);
        }
        for (k, v) in &call.headers {
            req = req.header(k, v);
        }
        if let Some(b) = call.body {
            req = req
                .header("content-type", "application/json")
                .body(b.into_bytes());
        }
        let what = format!("{} {}", call.method.to_uppercase(), call.target);
        let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        // A server-sent-events stream never ends: its headers are what is checked.
        let bytes = if content_type.starts_with("text/event-stream") {
            drop(resp);
            Default::default()
        } else {
            resp.bytes().await.unwrap_or_default()
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.seen
            .entry((call.method.to_string(), call.template.to_string()))
            .or_default()
            .insert(status);
        let Some(op) = self.operation(call.method, call.template).cloned() else {
            self.failures.push(format!(
                "{what}: {} {} is not documented",
                call.method, call.template
            ));
            return (status, body);
        };
        let Some(response) = op["responses"].get(status.to_string()) else {
            let listed: Vec<&String> = op["responses"]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            self.failures.push(format!(
                "{what}: answered {status}, which {} {} does not document (documented: {listed:?}); body: {}",
                call.method,
                call.template,
                truncate(&String::from_utf8_lossy(&bytes))
            ));
            return (status, body);
        };
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media == "text/event-stream" && response["content"].get(media).is_none() {
            self.failures.push(format!(
                "{what}: answered {status} as {media}, which the document does not list for it"
            ));
        }
        if media == "application/json" || media == "application/problem+json" {
            match response["content"].get(media) {
                Some(content) => {
                    if let Some(schema) = content.get("schema") {
                        let schema = schema.clone();
                        self.validate(&format!("{what} ({status})"), &schema, &body);
                    }
                }
                None => self.failures.push(format!(
                    "{what}: answered {status} as {media}, which the document does not list for it"
                )),
            }
        }
        (status, body)
    }

    /// Sends a call that must answer `want` (the request is built to), then checks it as any.
    async fn expect(&mut self, want: u16, call: Call<'_>) -> Value {
        let what = format!("{} {}", call.method.to_uppercase(), call.target);
        let (status, body) = self.send(call).await;
        if status != want {
            self.failures.push(format!(
                "{what}: expected {want}, got {status}: {}",
                truncate(&body.to_string())
            ));
        }
        body
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(400).collect()
}

/// `/v1/x/{id}/y` with every parameter replaced by `value`.
fn fill(template: &str, value: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let j = rest[i..].find('}').map_or(rest.len(), |j| i + j + 1);
        out.push_str(value);
        rest = &rest[j..];
    }
    out.push_str(rest);
    out
}

fn documented_methods(doc: &Value, path: &str) -> BTreeSet<String> {
    METHODS
        .iter()
        .filter(|m| doc["paths"][path].get(**m).is_some())
        .map(|m| m.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_the_live_api() {
    let c = Cluster::start_tls(1, &[]);
    let node = c.wait_leader().await;
    c.wait_log_keys(1).await;
    let dir = c.tls_dir.clone().expect("tls cluster");
    let bare_tls =
        tribune_tls::ClientTls::load(&dir.join("ca.pem"), None).expect("CA-only client TLS");
    let bare = reqwest::Client::builder()
        .use_preconfigured_tls(bare_tls.rustls_config(&[b"http/1.1"]).expect("tls"))
        .timeout(std::time::Duration::from_secs(20))
        .build()
        .expect("client");

    let (status, doc) = c
        .get_json(node, "/v1/openapi.json")
        .await
        .expect("GET /v1/openapi.json");
    assert_eq!(status, 200, "GET /v1/openapi.json: {doc}");
    assert_eq!(doc["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
    // `tribune api openapi` prints the same document, without a cluster.
    let printed = std::process::Command::new(common::BIN)
        .args(["api", "openapi"])
        .output()
        .expect("run tribune api openapi");
    assert!(printed.status.success(), "tribune api openapi: {printed:?}");
    let printed: Value =
        serde_json::from_slice(&printed.stdout).expect("tribune api openapi: JSON");
    assert_eq!(
        printed, doc,
        "tribune api openapi prints another document than the server serves"
    );

    // (a) The router's routes and the document's paths: the same set.
    let routes: BTreeSet<&str> = http::route_paths().into_iter().collect();
    let documented: BTreeSet<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    let concrete: BTreeMap<&str, &str> = openapi::CONCRETE_PATHS.into_iter().collect();
    let undocumented: Vec<&&str> = routes
        .iter()
        .filter(|r| !documented.contains(**r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "routes the router serves that the OpenAPI document leaves out: {undocumented:?}"
    );
    let unserved: Vec<&String> = documented
        .iter()
        .filter(|p| {
            !routes.contains(p.as_str())
                && !concrete.get(p.as_str()).is_some_and(|t| routes.contains(t))
        })
        .collect();
    assert!(
        unserved.is_empty(),
        "documented paths no route serves: {unserved:?}"
    );

    let mut k = Checker {
        c: &c,
        node,
        bare,
        doc: doc.clone(),
        seen: BTreeMap::new(),
        failures: Vec::new(),
    };

    // Methods: on each route template exactly the documented methods are served.
    for route in &routes {
        let want = documented_methods(&doc, route);
        let target = fill(route, "99");
        for m in METHODS {
            let (status, _) = if want.contains(m) {
                k.send(call(m, route, &target)).await
            } else {
                let r =
                    k.c.http
                        .request(
                            Method::from_bytes(m.to_uppercase().as_bytes()).expect("method"),
                            k.c.url(node, &target),
                        )
                        .send()
                        .await
                        .expect("probe");
                (r.status().as_u16(), Value::Null)
            };
            if want.contains(m) == (status == 405) {
                k.failures.push(format!(
                    "{} {target}: answered {status}, but the document {} {m} on {route}",
                    m.to_uppercase(),
                    if want.contains(m) {
                        "lists"
                    } else {
                        "does not list"
                    }
                ));
            }
        }
    }

    exercise::exercise(&mut k).await;

    // Every documented operation was called.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() && !k.seen.contains_key(&(m.to_string(), path.clone())) {
                k.failures
                    .push(format!("{m} {path} is documented but was never called"));
            }
        }
    }
    assert!(
        k.failures.is_empty(),
        "{} disagreement(s) between the OpenAPI document and the live controller:\n{}",
        k.failures.len(),
        k.failures.join("\n")
    );

    validate_openapi_document(&doc);
}

/// Valid and invalid calls of every documented operation.
/// The document is valid OpenAPI 3.1, by `openapi-spec-validator` (PyPI), when installed.
fn validate_openapi_document(doc: &Value) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write the document");
    let script = "import sys\n\
        try:\n    from openapi_spec_validator import validate\n    from openapi_spec_validator.readers import read_from_filename\n\
        except ImportError as e:\n    print('missing: ' + str(e)); sys.exit(3)\n\
        spec, _ = read_from_filename(sys.argv[1])\n\
        validate(spec)\n\
        print('valid')\n";
    let out = match std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            tribune_testkit::say_skipped(&format!("openapi document validation: no python3 ({e})"));
            return;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.code() == Some(3) {
        tribune_testkit::say_skipped(&format!(
            "openapi document validation: openapi-spec-validator is not installed ({}; scripts/test installs it)",
            text.trim()
        ));
        return;
    }
    assert!(
        out.status.success() && text.contains("valid"),
        "openapi-spec-validator refuses the document:\n{text}"
    );
}
