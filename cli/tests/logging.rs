//! One subscriber in every serving process: `--log-format json` gives one JSON object per line
//! (the HTTP access log among them), `--log-level` takes per-module filters and a filter that
//! does not parse stops the start naming it.

mod common;

use common::{BIN, Cluster};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_access_log_with_route_and_status() {
    let c = Cluster::start(
        1,
        &[
            "--log-format",
            "json",
            "--log-level",
            "warn,tribune=info,tribune_controller=info,openraft=off",
        ],
    );
    let leader = c.wait_leader().await;
    let (status, _) = c
        .get_json(leader, "/v1/cluster")
        .await
        .expect("GET /v1/cluster");
    assert_eq!(status, 200);
    let path = c.nodes[&leader].log.clone();
    let deadline = std::time::Instant::now() + common::DEADLINE;
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}"))
            })
            .collect();
        let access = lines.iter().find(|v| {
            v["target"] == "tribune_controller::access"
                && v["span"]["path"] == "/v1/cluster"
                && v["fields"]["status"] == 200
        });
        if let Some(a) = access {
            assert_eq!(a["level"], "INFO", "{a}");
            assert_eq!(a["span"]["method"], "GET", "{a}");
            assert!(a["fields"]["latency_ms"].is_number(), "{a}");
            // The module filter: openraft is off, Tribune's own info lines are in.
            assert!(lines.iter().all(|v| {
                !v["target"]
                    .as_str()
                    .unwrap_or_default()
                    .starts_with("openraft")
            }));
            assert!(
                lines
                    .iter()
                    .any(|v| v["fields"]["message"] == "controller serving")
            );
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no access log line for GET /v1/cluster in\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[test]
fn a_log_filter_that_does_not_parse_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (args, env) in [
        (vec!["--log-level", "tribune=loud"], None),
        (vec![], Some(("TRIBUNE_LOG", "tribune=loud"))),
    ] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.arg("controller")
            .args(&args)
            .args([
                "--id",
                "1",
                "--listen",
                "127.0.0.1:0",
                "--insecure",
                "--data-dir",
            ])
            .arg(dir.path());
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run tribune");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(
            err.contains("--log-level / TRIBUNE_LOG") && err.contains("tribune=loud"),
            "{err}"
        );
    }
}
