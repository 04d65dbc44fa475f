//! Bad input gets the right status and a clear message, and nothing is half-written.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use serde_json::{Value, json};

async fn send(
    c: &Cluster,
    req: reqwest::RequestBuilder,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let _ = c;
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_problem(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &Value,
    want: u16,
    detail_has: &str,
) {
    assert_eq!(status, want, "{body}");
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    assert_eq!(body["status"].as_u64(), Some(u64::from(want)));
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_has),
        "detail {detail:?} should mention {detail_has:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_problems_and_write_nothing() {
    let c = Cluster::start(3, &[]);
    c.wait_leader().await;
    let (s, v) = c.put_policy(2, "base", "policy \"base\" {}", None).await;
    assert_eq!(s, 201, "{v}");
    let url = c.url(2, "/v1/policies/base");
    let http = &c.http;

    // Malformed JSON.
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .header("content-type", "application/json")
            .body("{\"source\": "),
    )
    .await;
    assert_problem(s, &h, &b, 400, "invalid JSON body");
    // Unknown field, named.
    let (s, h, b) = send(&c, http.put(&url).json(&json!({"source": "x", "sauce": 1}))).await;
    assert_problem(s, &h, &b, 400, "unknown field `sauce`");
    // Wrong type.
    let (s, h, b) = send(&c, http.put(&url).json(&json!({"source": 42}))).await;
    assert_problem(s, &h, &b, 400, "invalid type");
    // No JSON content type.
    let (s, h, b) = send(&c, http.put(&url).body("{}")).await;
    assert_problem(s, &h, &b, 400, "Content-Type: application/json");
    // Oversized body (2 MiB > 1 MiB limit).
    let big = json!({"source": "x".repeat(2 * 1024 * 1024)});
    let (s, h, b) = send(&c, http.put(&url).json(&big)).await;
    assert_problem(s, &h, &b, 413, "larger than");
    // Oversized policy source inside a body that fits (300 KiB > 256 KiB).
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .json(&json!({"source": "x".repeat(300 * 1024)})),
    )
    .await;
    assert_problem(s, &h, &b, 413, "limit is 262144 bytes");
    // Version conflict: If-Match with a stale version.
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .header("if-match", "\"7\"")
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_problem(s, &h, &b, 409, "is at version 1, not 7");
    assert_eq!(b["current_version"].as_u64(), Some(1));
    // Create-only on an existing name.
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .header("if-none-match", "*")
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_problem(s, &h, &b, 409, "already exists");
    // Garbage If-Match.
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .header("if-match", "yesterday")
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_problem(s, &h, &b, 400, "If-Match must be a version number");
    // Bad name.
    let (s, h, b) = send(
        &c,
        http.put(c.url(1, "/v1/policies/Bad%20Name"))
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_problem(s, &h, &b, 400, "invalid policy name");
    // Empty source is refused by the validator, with diagnostics.
    let (s, h, b) = send(
        &c,
        http.put(c.url(3, "/v1/policies/empty"))
            .json(&json!({"source": "  "})),
    )
    .await;
    assert_problem(s, &h, &b, 400, "nothing was stored");
    assert!(
        b["diagnostics"].as_array().is_some_and(|d| !d.is_empty()),
        "{b}"
    );
    // A policy that does not check: rejected with rustc-style diagnostics, line and column.
    let bad = "policy \"typo\" {\n  match true\n  limit { cpu = 2GiB }\n}\n";
    let (s, h, b) = send(
        &c,
        http.put(c.url(1, "/v1/policies/typo"))
            .json(&json!({"source": bad})),
    )
    .await;
    assert_problem(s, &h, &b, 400, "typo.tribune:3:");
    let d = &b["diagnostics"][0];
    assert_eq!(
        (d["severity"].as_str(), d["line"].as_u64()),
        (Some("error"), Some(3)),
        "{b}"
    );
    // Name in the source and in the URL must agree.
    let (s, h, b) = send(
        &c,
        http.put(c.url(1, "/v1/policies/other"))
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_problem(s, &h, &b, 400, "names must match");
    // Unknown route and unknown query parameter.
    let (s, h, b) = send(&c, http.get(c.url(1, "/v1/polices"))).await;
    assert_problem(s, &h, &b, 404, "no such endpoint");
    let (s, h, b) = send(&c, http.get(c.url(1, "/v1/policies?stael=true"))).await;
    assert_problem(s, &h, &b, 400, "unknown field `stael`");
    // Missing object.
    let (s, h, b) = send(&c, http.get(c.url(3, "/v1/policies/nope"))).await;
    assert_problem(s, &h, &b, 404, "no policy named");
    let (s, h, b) = send(&c, http.delete(c.url(3, "/v1/policies/nope"))).await;
    assert_problem(s, &h, &b, 404, "no policy");

    // Nothing was half-written: one policy, untouched, at version 1, on every node.
    for id in 1..=3 {
        let (s, list) = c.get_json(id, "/v1/policies").await.expect("list");
        assert_eq!(s, 200);
        let list = list.as_array().expect("array").clone();
        assert_eq!(list.len(), 1, "node {id}: {list:?}");
        assert_eq!(
            (list[0]["version"].as_u64(), list[0]["source"].as_str()),
            (Some(1), Some("policy \"base\" {}"))
        );
    }

    // A correct conditional update goes through and carries the new ETag.
    let (s, h, b) = send(
        &c,
        http.put(&url)
            .header("if-match", "\"1\"")
            .json(&json!({"source": "policy \"base\" { match true }"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h.get("etag").and_then(|v| v.to_str().ok()), Some("\"2\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_leader_answers_503_with_a_retry_hint_never_hangs() {
    let mut c = Cluster::start(3, &[]);
    c.wait_leader().await;
    let (s, _) = c.put_policy(1, "kept", "policy \"kept\" {}", None).await;
    assert_eq!(s, 201);
    // Wait until node 3 has applied it, then cut node 3 off from both others.
    let deadline = Instant::now() + common::DEADLINE;
    while c
        .get_json(3, "/v1/policies/kept?stale=true")
        .await
        .map(|r| r.0)
        != Some(200)
    {
        assert!(Instant::now() < deadline, "node 3 never applied the write");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill9(1);
    c.kill9(2);

    for req in [
        c.http
            .put(c.url(3, "/v1/policies/lost"))
            .json(&json!({"source": "policy \"lost\" {}"})),
        c.http.get(c.url(3, "/v1/policies/kept")),
        c.http.get(c.url(3, "/v1/policies")),
    ] {
        let started = Instant::now();
        let (s, h, b) = send(&c, req).await;
        let took = started.elapsed();
        assert_eq!(s, 503, "{b}");
        assert!(h.get("retry-after").is_some(), "503 carries Retry-After");
        assert!(b["retry_after_ms"].as_u64().is_some(), "{b}");
        assert!(
            b["detail"]
                .as_str()
                .is_some_and(|d| d.contains("retry") || d.contains("read the object back")),
            "{b}"
        );
        assert!(
            took < Duration::from_secs(10),
            "answered in {took:?}, not hung"
        );
    }
    // A stale read still answers from what node 3 has.
    let (s, v) = c
        .get_json(3, "/v1/policies/kept?stale=true")
        .await
        .expect("stale");
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)));
    let (s, _) = c.get_json(3, "/readyz").await.expect("readyz");
    assert_eq!(s, 503, "a node with no leader is not ready");
    let (s, _) = c.get_json(3, "/healthz").await.expect("healthz");
    assert_eq!(s, 200, "but it is alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_put_takes_the_name_from_the_source_and_checks_locally_first() {
    let c = Cluster::start(1, &[]);
    c.wait_leader().await;
    let endpoint = c.endpoints();
    let root = manifest_dir().join("..");
    let run = |args: &[&str]| {
        std::process::Command::new(common::BIN)
            .args(args)
            .args(["--endpoint", &endpoint, "--timeout-secs", "60"])
            .current_dir(&root)
            .output()
            .expect("run tribune")
    };
    // One policy in the file: stored under the name it declares, not the file name.
    let out = run(&["policy", "put", "examples/policies/gpu-inference.tribune"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (s, v) = c.get_policy(1, "umbrella-inference").await;
    assert_eq!((s, v["version"].as_u64()), (200, Some(1)), "{v}");
    // Several policies in one file: refused locally with the names, nothing sent.
    let out = run(&["policy", "put", "examples/policies/tenant-quotas.tribune"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("defines 3 policies"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A policy that does not check never leaves the machine.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.tribune");
    std::fs::write(
        &bad,
        "policy \"bad\" {\n  match true\n  limit { cpu = 2GiB }\n}\n",
    )
    .expect("write");
    let out = run(&["policy", "put", bad.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.tribune:3:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nor does one that is not UTF-8: a located diagnostic, not an I/O error.
    let latin1 = dir.path().join("latin1.tribune");
    std::fs::write(&latin1, b"policy \"l\" {\n  # caf\xe9\n  match true\n}\n").expect("write");
    let out = run(&["policy", "put", latin1.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error[E0004]: invalid UTF-8 byte 0xE9"),
        "{err}"
    );
    assert!(err.contains("latin1.tribune:2:8"), "{err}");
    let (s, list) = c.get_json(1, "/v1/policies").await.expect("list");
    assert_eq!((s, list.as_array().map(Vec::len)), (200, Some(1)));
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
