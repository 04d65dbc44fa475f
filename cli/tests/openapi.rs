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

    exercise(&mut k).await;

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
async fn exercise(k: &mut Checker<'_>) {
    let p = "/v1/policies/{name}";
    let e = "/v1/enclaves/{id}";
    // This document, and the credentials every /v1 route needs.
    k.expect(200, call("get", "/v1/openapi.json", "/v1/openapi.json"))
        .await;
    k.expect(
        401,
        call("get", "/v1/openapi.json", "/v1/openapi.json").anonymous(),
    )
    .await;
    k.expect(
        401,
        call("get", "/v1/policies", "/v1/policies").token("tbt_0000000000000000_bogus"),
    )
    .await;

    // Policies.
    k.expect(
        201,
        call("put", p, "/v1/policies/p1").json(json!({"source": POLICY})),
    )
    .await;
    k.expect(
        200,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("if-match", "\"1\""),
    )
    .await;
    k.expect(
        409,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("if-match", "\"7\""),
    )
    .await;
    k.expect(
        409,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("if-none-match", "*"),
    )
    .await;
    k.expect(
        400,
        call("put", p, "/v1/policies/p1").json(json!({"src": POLICY})),
    )
    .await;
    // Idempotency keys: a repeat answers the first outcome (v3, replaced), another request
    // under the same key is refused.
    k.expect(
        200,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("idempotency-key", "openapi-1"),
    )
    .await;
    k.expect(
        200,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("idempotency-key", "openapi-1"),
    )
    .await;
    k.expect(
        422,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": format!("{POLICY}# another\n")}))
            .header("idempotency-key", "openapi-1"),
    )
    .await;
    k.expect(400, call("put", p, "/v1/policies/p1").raw("{\"source\": "))
        .await;
    k.expect(
        400,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": "policy \"p1\" { limit { cpu = 2 GiB } }"})),
    )
    .await;
    k.expect(
        400,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .header("if-match", "three"),
    )
    .await;
    let big = format!("{{\"source\": \"{}\"}}", "x".repeat(2 << 20));
    k.expect(413, call("put", p, "/v1/policies/p1").raw(&big))
        .await;
    k.expect(
        401,
        call("put", p, "/v1/policies/p1")
            .json(json!({"source": POLICY}))
            .anonymous(),
    )
    .await;
    k.expect(200, call("get", "/v1/policies", "/v1/policies"))
        .await;
    k.expect(200, call("get", "/v1/policies", "/v1/policies?stale=true"))
        .await;
    k.expect(400, call("get", "/v1/policies", "/v1/policies?bogus=1"))
        .await;
    k.expect(
        414,
        call(
            "get",
            "/v1/policies",
            &format!("/v1/policies?stale={}", "x".repeat(9000)),
        ),
    )
    .await;
    let mut many = call("get", "/v1/policies", "/v1/policies");
    for i in 0..70 {
        many = many.header(&format!("x-filler-{i}"), "1");
    }
    k.expect(431, many).await;
    k.expect(200, call("get", p, "/v1/policies/p1")).await;
    k.expect(404, call("get", p, "/v1/policies/nope")).await;
    k.expect(400, call("get", p, "/v1/policies/Bad%20Name"))
        .await;
    k.expect(
        200,
        call("post", "/v1/policies/plan", "/v1/policies/plan")
            .json(json!({"source": POLICY, "since_s": 60})),
    )
    .await;
    k.expect(
        400,
        call("post", "/v1/policies/plan", "/v1/policies/plan")
            .json(json!({"source": POLICY, "since_s": 0})),
    )
    .await;
    k.expect(
        400,
        call("post", "/v1/policies/plan", "/v1/policies/plan")
            .json(json!({"source": POLICY, "enclaves": "no-such"})),
    )
    .await;
    k.expect(
        409,
        call("delete", p, "/v1/policies/p1").header("if-match", "\"99\""),
    )
    .await;
    k.expect(404, call("delete", p, "/v1/policies/nope")).await;

    // A token for a role that may read but not write: 403 through the bearer scheme.
    let t = k
        .expect(
            201,
            call("post", "/v1/tokens", "/v1/tokens")
                .json(json!({"name": "aud", "role": "auditor", "ttl_s": 3600})),
        )
        .await;
    let secret = t["token"].as_str().unwrap_or_default().to_string();
    let id = t["id"].as_str().unwrap_or_default().to_string();
    k.expect(
        200,
        call("get", "/v1/policies", "/v1/policies").token(&secret),
    )
    .await;
    k.expect(
        403,
        call("put", p, "/v1/policies/p2")
            .json(json!({"source": POLICY}))
            .token(&secret),
    )
    .await;
    k.expect(403, call("get", "/v1/tokens", "/v1/tokens").token(&secret))
        .await;
    k.expect(
        403,
        call("get", "/v1/snapshot", "/v1/snapshot").token(&secret),
    )
    .await;

    // Hosts and enclaves.
    let host = json!({"id": "h1", "address": "127.0.0.1:1", "tee": "sim",
                      "capacity": {"cpu_millicores": 4000}});
    k.expect(
        200,
        call("put", "/v1/hosts/{id}", "/v1/hosts/h1").json(host.clone()),
    )
    .await;
    k.expect(
        400,
        call("put", "/v1/hosts/{id}", "/v1/hosts/h2").json(host),
    )
    .await;
    k.expect(
        400,
        call("put", "/v1/hosts/{id}", "/v1/hosts/h1").json(json!({"id": "h1"})),
    )
    .await;
    k.expect(
        403,
        call("put", "/v1/hosts/{id}", "/v1/hosts/h1")
            .json(json!({"id": "h1", "address": "a:1", "tee": "sim"}))
            .token(&secret),
    )
    .await;
    k.expect(200, call("get", "/v1/hosts", "/v1/hosts")).await;
    k.expect(400, call("get", "/v1/hosts", "/v1/hosts?stale=maybe"))
        .await;
    // The console's API: who am I, the usage stream, the formatter.
    k.expect(200, call("get", "/v1/whoami", "/v1/whoami")).await;
    k.expect(200, call("get", "/v1/usage/stream", "/v1/usage/stream"))
        .await;
    k.expect(
        400,
        call("get", "/v1/usage/stream", "/v1/usage/stream?bogus=1"),
    )
    .await;
    k.expect(
        404,
        call("get", "/v1/usage/stream", "/v1/usage/stream?enclave=nope"),
    )
    .await;
    let fmt = "/v1/policy-format";
    k.expect(200, call("post", fmt, fmt).json(json!({"source": POLICY})))
        .await;
    k.expect(
        400,
        call("post", fmt, fmt).json(json!({"source": "policy \"p\" {"})),
    )
    .await;
    k.expect(400, call("post", fmt, fmt).json(json!({"src": POLICY})))
        .await;

    // Scheduling: a create without a host, cordon, uncordon, drain.
    let create = |id: &str, millicores: u64| {
        call("post", "/v1/enclaves", "/v1/enclaves")
            .json(json!({"id": id, "tenant": "acme", "tee": "sim",
                   "requested": {"cpu_millicores": millicores}}))
    };
    k.expect(201, create("s1", 1000)).await;
    k.expect(409, create("s1", 1000)).await;
    k.expect(409, create("s2", 64_000)).await;
    k.expect(
        400,
        call("post", "/v1/enclaves", "/v1/enclaves").json(json!({"id": "s3"})),
    )
    .await;
    k.expect(403, create("s4", 1000).token(&secret)).await;
    let hp = |verb: &str, host: &str| {
        let template = match verb {
            "cordon" => "/v1/hosts/{id}/cordon",
            "uncordon" => "/v1/hosts/{id}/uncordon",
            _ => "/v1/hosts/{id}/drain",
        };
        call("post", template, &format!("/v1/hosts/{host}/{verb}"))
    };
    k.expect(200, hp("cordon", "h1")).await;
    k.expect(404, hp("cordon", "nope")).await;
    k.expect(400, hp("cordon", "bad%20name")).await;
    k.expect(403, hp("cordon", "h1").token(&secret)).await;
    k.expect(200, hp("uncordon", "h1")).await;
    k.expect(404, hp("uncordon", "nope")).await;
    k.expect(200, hp("drain", "h1")).await;
    k.expect(404, hp("drain", "nope")).await;
    k.expect(200, hp("uncordon", "h1")).await;
    // Live migration: the refusals (no QEMU agent here; `cli/tests/migrate_live.rs` migrates
    // for real) and the list.
    let mig = |id: &str| {
        call(
            "post",
            "/v1/enclaves/{id}/migrate",
            &format!("/v1/enclaves/{id}/migrate"),
        )
    };
    k.expect(404, mig("nope")).await;
    k.expect(422, mig("s1").json(json!({"to": "h1"}))).await;
    k.expect(400, mig("s1").json(json!({"bogus": 1}))).await;
    k.expect(403, mig("s1").token(&secret)).await;
    k.expect(200, call("get", "/v1/migrations", "/v1/migrations"))
        .await;
    let enclave = json!({"id": "e1", "tenant": "acme", "tee": "sim", "labels": {"app": "web"}});
    k.expect(200, call("put", e, "/v1/enclaves/e1").json(enclave.clone()))
        .await;
    k.expect(
        200,
        call("put", e, "/v1/enclaves/e1?spec_only=true")
            .json(enclave.clone())
            .header("if-match", "\"1\""),
    )
    .await;
    k.expect(
        409,
        call("put", e, "/v1/enclaves/e1")
            .json(enclave.clone())
            .header("if-match", "\"99\""),
    )
    .await;
    k.expect(400, call("put", e, "/v1/enclaves/e9").json(enclave))
        .await;
    k.expect(
        400,
        call("put", e, "/v1/enclaves/e1")
            .json(json!({"id": "e1", "tenant": "acme", "tee": "nope"})),
    )
    .await;
    let placed = json!({"id": "e2", "tenant": "acme", "tee": "sim", "state": "running",
                        "placement": {"host": "h1", "epoch": 1}});
    k.expect(200, call("put", e, "/v1/enclaves/e2").json(placed))
        .await;
    k.expect(200, call("get", "/v1/enclaves", "/v1/enclaves"))
        .await;
    k.expect(200, call("get", e, "/v1/enclaves/e2")).await;
    k.expect(404, call("get", e, "/v1/enclaves/nope")).await;
    k.expect(
        200,
        call("get", "/v1/enclaves/{id}/status", "/v1/enclaves/e2/status"),
    )
    .await;
    k.expect(
        404,
        call(
            "get",
            "/v1/enclaves/{id}/status",
            "/v1/enclaves/nope/status",
        ),
    )
    .await;
    k.expect(
        200,
        call(
            "get",
            "/v1/enclaves/{id}/receipt",
            "/v1/enclaves/e2/receipt",
        ),
    )
    .await;
    k.expect(
        400,
        call(
            "get",
            "/v1/enclaves/{id}/receipt",
            "/v1/enclaves/e2/receipt?from=soon",
        ),
    )
    .await;
    k.expect(
        404,
        call(
            "get",
            "/v1/enclaves/{id}/receipt",
            "/v1/enclaves/nope/receipt",
        ),
    )
    .await;
    k.expect(409, call("delete", e, "/v1/enclaves/e2")).await;
    k.expect(
        409,
        call("delete", e, "/v1/enclaves/e1").header("if-match", "\"99\""),
    )
    .await;
    k.expect(204, call("delete", e, "/v1/enclaves/e1")).await;
    k.expect(404, call("delete", e, "/v1/enclaves/e1")).await;

    // Cluster.
    k.expect(200, call("get", "/v1/cluster", "/v1/cluster"))
        .await;
    k.expect(
        400,
        call("post", "/v1/cluster/members", "/v1/cluster/members").json(json!({"id": 4})),
    )
    .await;
    k.expect(
        400,
        call("post", "/v1/cluster/members", "/v1/cluster/members")
            .json(json!({"id": 4, "address": "no port"})),
    )
    .await;
    k.expect(
        400,
        call(
            "post",
            "/v1/cluster/members/{id}/promote",
            "/v1/cluster/members/x/promote",
        ),
    )
    .await;
    k.expect(
        400,
        call(
            "delete",
            "/v1/cluster/members/{id}",
            "/v1/cluster/members/x",
        ),
    )
    .await;
    k.expect(200, call("get", "/v1/snapshot", "/v1/snapshot"))
        .await;

    // The log.
    k.expect(200, call("get", "/v1/log/sth", "/v1/log/sth"))
        .await;
    k.expect(400, call("get", "/v1/log/sth", "/v1/log/sth?x=1"))
        .await;
    k.expect(200, call("get", "/v1/log/checkpoint", "/v1/log/checkpoint"))
        .await;
    k.expect(
        400,
        call("get", "/v1/log/checkpoint", "/v1/log/checkpoint?x=1"),
    )
    .await;
    k.expect(200, call("get", "/v1/log/note-keys", "/v1/log/note-keys"))
        .await;
    k.expect(200, call("get", "/v1/log/keys", "/v1/log/keys"))
        .await;
    k.expect(200, call("get", "/v1/log/entries", "/v1/log/entries"))
        .await;
    k.expect(
        200,
        call(
            "get",
            "/v1/log/entries",
            "/v1/log/entries?kind=policy_change&stale=true",
        ),
    )
    .await;
    k.expect(
        400,
        call("get", "/v1/log/entries", "/v1/log/entries?kind=bogus"),
    )
    .await;
    k.expect(
        200,
        call(
            "get",
            "/v1/log/proof/inclusion",
            "/v1/log/proof/inclusion?index=0",
        ),
    )
    .await;
    k.expect(
        400,
        call(
            "get",
            "/v1/log/proof/inclusion",
            "/v1/log/proof/inclusion?index=999999",
        ),
    )
    .await;
    let zeros = "0".repeat(64);
    k.expect(
        404,
        call(
            "get",
            "/v1/log/proof/inclusion",
            &format!("/v1/log/proof/inclusion?leaf_hash={zeros}"),
        ),
    )
    .await;
    k.expect(
        200,
        call(
            "get",
            "/v1/log/proof/consistency",
            "/v1/log/proof/consistency?first=1",
        ),
    )
    .await;
    k.expect(
        400,
        call(
            "get",
            "/v1/log/proof/consistency",
            "/v1/log/proof/consistency",
        ),
    )
    .await;

    // Tokens.
    k.expect(200, call("get", "/v1/tokens", "/v1/tokens")).await;
    k.expect(
        400,
        call("post", "/v1/tokens", "/v1/tokens")
            .json(json!({"name": "x", "role": "king", "ttl_s": 60})),
    )
    .await;
    k.expect(400, call("delete", "/v1/tokens/{id}", "/v1/tokens/xyz"))
        .await;
    k.expect(
        404,
        call("delete", "/v1/tokens/{id}", "/v1/tokens/0000000000000000"),
    )
    .await;
    k.expect(
        200,
        call("delete", "/v1/tokens/{id}", &format!("/v1/tokens/{id}")),
    )
    .await;
    k.expect(
        401,
        call("get", "/v1/policies", "/v1/policies").token(&secret),
    )
    .await;

    k.expect(204, call("delete", p, "/v1/policies/p1")).await;

    // Health: no credentials.
    k.expect(200, call("get", "/healthz", "/healthz").anonymous())
        .await;
    k.expect(200, call("get", "/readyz", "/readyz").anonymous())
        .await;
    k.expect(200, call("get", "/metrics", "/metrics").anonymous())
        .await;
}

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
