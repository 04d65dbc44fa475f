//! Bounded input (issue 11, findings 2 and 9): a burst of huge or maximum-size requests leaves
//! the cluster writable, its term steady and its memory small; every refusal — over HTTP/1.1
//! and HTTP/2 alike — is an RFC 9457 problem, never a reset stream or an empty body.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, TEST_CLIENT_STEM};
use serde_json::{Value, json};
use tribune_tls::{ClientTls, TlsFiles};

fn client(c: &Cluster, cert: bool, alpn: &[&[u8]]) -> reqwest::Client {
    let dir = c.tls_dir.clone().expect("tls");
    let tls = if cert {
        ClientTls::from_files(&TlsFiles::in_dir(&dir, TEST_CLIENT_STEM)).expect("tls")
    } else {
        ClientTls::load(&dir.join("ca.pem"), None).expect("tls")
    };
    let mut b = reqwest::Client::builder()
        .use_preconfigured_tls(tls.rustls_config(alpn).expect("rustls"))
        .timeout(Duration::from_secs(30));
    if alpn == [b"h2"] {
        b = b.http2_prior_knowledge();
    }
    b.build().expect("client")
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb / 1024)
}

async fn term(c: &Cluster, id: u64) -> u64 {
    let (_, v) = c.get_json(id, "/v1/cluster").await.expect("cluster view");
    v["term"].as_u64().expect("term")
}

/// Finding 2: 40 bodies of ~950 KB (40,000 labels), unauthenticated and authenticated, then 40
/// valid maximum-size enclaves: the cluster stays writable, the term steady, RSS small.
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_huge_requests_cannot_stall_the_cluster() {
    let c = Cluster::start_tls(3, &[]);
    let leader = c.wait_leader().await;
    let term_before = term(&c, leader).await;
    let labels: serde_json::Map<String, Value> = (0..40_000)
        .map(|i| (format!("label-{i:05}"), Value::from("vvvvvvvvvv")))
        .collect();
    let huge = json!({"id": "f", "tenant": "acme", "tee": "sim", "labels": labels});
    assert!(huge.to_string().len() > 900_000);
    let anonymous = client(&c, false, &[b"http/1.1"]);
    let admin = client(&c, true, &[b"http/1.1"]);
    let mut tasks = vec![];
    for i in 0..40 {
        for http in [anonymous.clone(), admin.clone()] {
            let mut body = huge.clone();
            body["id"] = Value::from(format!("f{i}"));
            let url = c.url(1 + (i % 3), &format!("/v1/enclaves/f{i}"));
            tasks.push(tokio::spawn(async move {
                http.put(url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }));
        }
    }
    for t in tasks {
        // A closed connection is an answer too (HTTP/1.1 after a refused upload); a 2xx is not.
        if let Ok(Ok(status)) = t.await {
            assert!(
                [400, 401, 413].contains(&status),
                "a huge body got {status}"
            );
        }
    }
    // Valid maximum-size enclaves: 32 labels of 253 bytes, 16 measurements, a 15 KB spec.
    let big_labels: serde_json::Map<String, Value> = (0..32)
        .map(|i| (format!("k{i:02}"), Value::from("v".repeat(253))))
        .collect();
    let measurements: Vec<String> = (0..16).map(|_| "ab".repeat(64)).collect();
    let mut tasks = vec![];
    for i in 0..40 {
        let body = json!({"id": format!("m{i}"), "tenant": "acme", "tee": "sim",
            "labels": big_labels, "expected_measurements": measurements,
            "launch": {"process": {"cmd": ["/bin/true", "x".repeat(15_000)]}}});
        let http = admin.clone();
        let url = c.url(1 + (i % 3), &format!("/v1/enclaves/m{i}"));
        tasks.push(tokio::spawn(async move {
            // A 503 with a retry hint is the cluster shedding load on a busy machine (the
            // request deadline is 3 s), not a stall: the same PUT again (an idempotent upsert)
            // must succeed well within the test's deadline.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = http
                    .put(url.clone())
                    .json(&body)
                    .send()
                    .await
                    .expect("sent");
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                if status != 503 || Instant::now() > deadline {
                    return (status, text);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }));
    }
    for t in tasks {
        let (status, body) = t.await.expect("task");
        assert_eq!(status, 200, "a valid maximum-size enclave: {body}");
    }
    // Writable right after the burst: not stalled (generous, this is not a speed test).
    let burst_end = Instant::now();
    let (status, body) = c
        .put_policy(
            leader,
            "after",
            "policy \"after\" {\n  limit { cpu = 1 }\n}\n",
            None,
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
    assert!(
        burst_end.elapsed() < Duration::from_secs(30),
        "took {:?}",
        burst_end.elapsed()
    );
    let leader_after = c.wait_leader().await;
    let term_after = term(&c, leader_after).await;
    assert!(
        term_after <= term_before + 2,
        "the term moved from {term_before} to {term_after}: elections under the burst"
    );
    for (id, n) in &c.nodes {
        let pid = n.child.as_ref().map(|ch| ch.id()).expect("running");
        let rss = rss_mib(pid);
        assert!(rss < 300, "controller {id} holds {rss} MiB after the burst");
    }
}

/// Finding 9: HTTP/2 refusals get problems, as do bad path parameters, wrong methods, long
/// URIs and too many headers.
#[tokio::test(flavor = "multi_thread")]
async fn refusals_are_problems_over_http1_and_http2() {
    let c = Cluster::start_tls(1, &[]);
    let leader = c.wait_leader().await;
    let big = "a".repeat(2 * 1024 * 1024);
    for alpn in [&[b"http/1.1".as_slice()][..], &[b"h2".as_slice()][..]] {
        let http = client(&c, true, alpn);
        let url = |p: &str| c.url(leader, p);
        let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
            (
                "wrong content type",
                http.put(url("/v1/policies/x"))
                    .header("content-type", "text/plain")
                    .body("a".repeat(900_000)),
                400,
            ),
            (
                "2 MiB body",
                http.put(url("/v1/policies/x"))
                    .header("content-type", "application/json")
                    .body(big.clone()),
                413,
            ),
            ("%FF in a path", http.get(url("/v1/policies/%FF")), 400),
            (
                "a non-number id",
                http.post(url("/v1/cluster/members/abc/promote")),
                400,
            ),
            ("wrong method", http.post(url("/v1/policies")), 405),
            (
                "long URI",
                http.get(url(&format!("/v1/policies?stale={}", "x".repeat(9000)))),
                414,
            ),
            (
                "many headers",
                (0..80).fold(http.get(url("/v1/policies")), |r, i| {
                    r.header(format!("x-h{i}"), "v")
                }),
                431,
            ),
            ("no route", http.get(url("/v2/nothing")), 404),
        ];
        for (what, req, want) in cases {
            let r = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{what} over {alpn:?}: no response: {e}"));
            assert_eq!(r.status().as_u16(), want, "{what} over {alpn:?}");
            let ct = r
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let body: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(
                ct, "application/problem+json",
                "{what} over {alpn:?}: {body}"
            );
            assert_eq!(body["status"], want, "{what} over {alpn:?}: {body}");
            assert!(
                body["detail"].as_str().is_some_and(|d| !d.is_empty()),
                "{body}"
            );
        }
    }
}
