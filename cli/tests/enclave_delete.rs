//! `DELETE /v1/enclaves/{id}`, gRPC `DeleteEnclave` and `tribune enclave stop|delete` on a real
//! controller: optimistic concurrency on the enclave's version, 404 for what is not there, a
//! placed enclave refused until it is stopped (its agent may be running it), and the log
//! naming who deleted it. Who may delete at all is in `authz.rs`'s matrix. Beside it, the
//! spec-only `PUT` (`?spec_only=true`) the Terraform provider updates with.

mod common;

use common::Cluster;
use serde_json::{Value, json};
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_client::ControlServiceClient;

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn tribune(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::BIN)
        .args(args)
        .args(["--endpoint", &c.endpoints(), "--timeout-secs", "60"])
        .output()
        .expect("run tribune")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enclave_is_deleted_at_its_version_and_only_once_no_agent_may_run_it() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader().await;
    let http = &c.http;
    let url = |p: &str| c.url(leader, p);

    // An enclave never placed, at version 2.
    for _ in 0..2 {
        c.put_json(
            leader,
            "/v1/enclaves/free",
            json!({"id": "free", "tenant": "acme", "tee": "sim"}),
        )
        .await;
    }
    // A stale version: a conflict naming the current one; nothing removed.
    let (s, b) = send(
        http.delete(url("/v1/enclaves/free"))
            .header("if-match", "\"1\""),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(b["current_version"].as_u64(), Some(2), "{b}");
    assert!(
        b["detail"]
            .as_str()
            .is_some_and(|d| d.contains("version 2")),
        "{b}"
    );
    let (s, _) = c.get_json(leader, "/v1/enclaves/free").await.expect("get");
    assert_eq!(s, 200, "a refused delete removes nothing");
    // If-None-Match makes no sense for a delete of something that exists: a conflict too.
    let (s, b) = send(
        http.delete(url("/v1/enclaves/free"))
            .header("if-none-match", "*"),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    // At its version: gone, 204, then 404 for GET and for a second DELETE.
    let (s, b) = send(
        http.delete(url("/v1/enclaves/free"))
            .header("if-match", "\"2\""),
    )
    .await;
    assert_eq!(s, 204, "{b}");
    let (s, _) = c.get_json(leader, "/v1/enclaves/free").await.expect("get");
    assert_eq!(s, 404);
    let (s, b) = send(http.delete(url("/v1/enclaves/free"))).await;
    assert_eq!(s, 404, "{b}");
    assert!(
        b["detail"].as_str().is_some_and(|d| d.contains("\"free\"")),
        "{b}"
    );
    let (s, b) = send(http.delete(url("/v1/enclaves/Not%20An%20Id"))).await;
    assert_eq!(s, 400, "{b}");

    // A placed, running enclave: refused with what to do, until it is stopped.
    c.put_json(
        leader,
        "/v1/enclaves/busy",
        json!({"id": "busy", "tenant": "acme", "tee": "sim", "state": "running",
               "placement": {"host": "h1", "epoch": 1}}),
    )
    .await;
    let (s, b) = send(http.delete(url("/v1/enclaves/busy"))).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/enclave-in-use")),
        "{b}"
    );
    assert!(
        b["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tribune enclave stop busy") && d.contains("\"h1\"")),
        "{b}"
    );
    let out = tribune(&c, &["enclave", "delete", "busy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("enclave stop busy"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tribune(&c, &["enclave", "stop", "busy", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stopped: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    let version = stopped["version"].as_u64().expect("version");
    // The CLI's --if-version is the precondition: a stale one is refused.
    let stale = (version - 1).to_string();
    let out = tribune(&c, &["enclave", "delete", "busy", "--if-version", &stale]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("409"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tribune(
        &c,
        &[
            "enclave",
            "delete",
            "busy",
            "--if-version",
            &version.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "deleted enclave busy"
    );
    let (s, _) = c.get_json(leader, "/v1/enclaves/busy").await.expect("get");
    assert_eq!(s, 404);

    // The log says who deleted which version.
    let entries = c.log_entries(leader).await.expect("log");
    let deleted: Vec<&Value> = entries
        .iter()
        .filter(|e| e["kind"] == "enclave_change" && e["detail"]["op"] == "delete")
        .collect();
    assert_eq!(deleted.len(), 2, "{deleted:?}");
    assert_eq!(deleted[0]["subject"], "free");
    assert_eq!(deleted[0]["detail"]["version"], 2);
    assert_eq!(deleted[1]["subject"], "busy");
    assert_eq!(deleted[1]["detail"]["state"], "stopped");
    assert_eq!(deleted[1]["detail"]["host"], "h1");
    assert_eq!(deleted[1]["detail"]["actor"], "anonymous (--insecure)");

    // gRPC: the same operation, the same preconditions.
    c.put_json(
        leader,
        "/v1/enclaves/viagrpc",
        json!({"id": "viagrpc", "tenant": "acme", "tee": "sim"}),
    )
    .await;
    let mut g = ControlServiceClient::connect(url(""))
        .await
        .expect("grpc connect");
    let e = g
        .delete_enclave(pb::DeleteRequest {
            name: "viagrpc".into(),
            expected_version: Some(7),
        })
        .await
        .expect_err("stale version");
    assert!(e.message().contains("version 1"), "{e:?}");
    let r = g
        .delete_enclave(pb::DeleteRequest {
            name: "viagrpc".into(),
            expected_version: Some(1),
        })
        .await
        .expect("deleted");
    assert_eq!(r.into_inner().deleted_version, 1);
    let e = g
        .delete_enclave(pb::DeleteRequest {
            name: "viagrpc".into(),
            expected_version: None,
        })
        .await
        .expect_err("gone");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_only_put_keeps_the_stored_state() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader().await;
    let http = &c.http;
    let url = |p: &str| c.url(leader, p);
    c.put_json(
        leader,
        "/v1/enclaves/held",
        json!({"id": "held", "tenant": "acme", "tee": "sim", "state": "running",
               "placement": {"host": "h1", "epoch": 3}}),
    )
    .await;
    let out = tribune(&c, &["enclave", "suspend", "held"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A body saying "running" and epoch 1: the spec changes, the state and epoch do not.
    let (s, b) = send(
        http.put(url("/v1/enclaves/held?spec_only=true"))
            .header("if-match", "\"2\"")
            .json(
                &json!({"id": "held", "tenant": "acme", "tee": "sim", "state": "running",
                          "priority": 9, "placement": {"host": "h1", "epoch": 1}}),
            ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["priority"], 9, "{b}");
    assert_eq!(b["state"], "suspended", "{b}");
    assert_eq!(b["placement"]["epoch"], 3, "{b}");
    assert_eq!(b["version"], 3, "{b}");
    // The same body without spec_only is an operator's resume.
    let (s, b) = send(
        http.put(url("/v1/enclaves/held"))
            .header("if-match", "\"3\"")
            .json(
                &json!({"id": "held", "tenant": "acme", "tee": "sim", "state": "running",
                          "placement": {"host": "h1", "epoch": 3}}),
            ),
    )
    .await;
    assert_eq!((s, b["state"].clone()), (200, json!("running")), "{b}");
    // Unknown query parameters are refused, not ignored.
    let (s, b) = send(
        http.put(url("/v1/enclaves/held?spec=true"))
            .json(&json!({"id": "held", "tenant": "acme", "tee": "sim"})),
    )
    .await;
    assert_eq!(s, 400, "{b}");
}
