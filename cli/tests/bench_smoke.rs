//! Smoke runs of every `tribune bench` scenario at a tiny size, so the scenarios keep working.
//! Seconds each; no figure is asserted (speed is claimed only from bench/README.md), only that
//! each scenario completes, prints its JSON line and measured something.

use std::io::Write;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

/// Runs `tribune bench ARGS --output json`, returns the JSON line and stderr.
fn bench(args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new(BIN)
        .arg("bench")
        .args(args)
        .args(["--output", "json"])
        .output()
        .expect("running tribune bench");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "tribune bench {args:?} failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"));
    let v = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    (v, stderr)
}

#[test]
fn writes_runs_against_tribune_and_etcd_when_there() {
    let (v, stderr) = bench(&[
        "writes",
        "--local",
        "--clients",
        "1,4",
        "--seconds",
        "1",
        "--rounds",
        "1",
        // Never install from a test: CI's scripts/test installs etcd-server up front.
        "--no-install",
    ]);
    assert_eq!(v["scenario"], "writes");
    let rows = v["results"].as_array().expect("results");
    assert_eq!(rows.len(), 2, "{v}");
    for r in rows {
        assert!(r["tribune"][0]["writes"].as_u64() > Some(0), "{r}");
    }
    match v["etcd_skipped"].as_str() {
        Some(why) => {
            let _ = writeln!(std::io::stderr(), "skipped etcd: {why}");
            assert!(stderr.contains("skipped etcd:"), "{stderr}");
            assert!(
                rows.iter()
                    .all(|r| r["etcd"].as_array().is_some_and(Vec::is_empty))
            );
        }
        None => {
            for r in rows {
                assert!(r["etcd"][0]["writes"].as_u64() > Some(0), "{r}");
                assert!(r["throughput_ratio"]["p50"].as_f64().is_some(), "{r}");
            }
        }
    }
}

#[test]
fn failover_runs_two_trials() {
    let (v, _) = bench(&["failover", "--trials", "2", "--load-clients", "1"]);
    assert_eq!(v["scenario"], "failover");
    assert_eq!(v["result"]["trials"], 2);
    assert_eq!(v["result"]["recovery_ms"]["n"], 2, "{v}");
}

#[test]
fn memory_runs_at_a_small_size() {
    let (v, _) = bench(&[
        "memory",
        "--enclaves",
        "40",
        "--agent-enclaves",
        "3",
        "--clients",
        "4",
    ]);
    assert_eq!(v["scenario"], "memory");
    assert_eq!(v["controller"]["enclaves"], 40);
    let nodes = v["controller"]["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 3, "{v}");
    assert!(nodes.iter().all(|n| n[1]["rss_mib"].as_f64() > Some(0.0)));
    match v["agent_skipped"].as_str() {
        Some(why) => {
            let _ = writeln!(std::io::stderr(), "skipped agent: {why}");
        }
        None => assert!(v["agent"]["agent"]["rss_mib"].as_f64() > Some(0.0), "{v}"),
    }
}

#[test]
fn schedule_e2e_places_through_raft_at_a_small_size() {
    let (v, _) = bench(&[
        "schedule",
        "--e2e",
        "--hosts",
        "3",
        "--enclaves",
        "40",
        "--clients",
        "4",
    ]);
    assert_eq!(v["scenario"], "schedule-e2e");
    let r = &v["result"];
    assert_eq!(r["placed"], 40, "{v}");
    assert_eq!(r["latency_ms"]["n"], 40, "{v}");
    assert_eq!(r["over_committed_hosts"], 0, "{v}");
}

/// `bench messages` at a size that takes seconds.
const SMALL_MESSAGES: &[&str] = &[
    "messages",
    "--seconds",
    "2",
    "--receiver-rate",
    "2000",
    "--sender-rate",
    "100",
    "--flood-factor",
    "10",
    "--throughput-seconds",
    "1",
];

/// The same scenarios between two agents in separate network namespaces, over their peer links
/// (root only: namespaces and a veth pair).
#[test]
fn messages_runs_across_two_hosts_at_a_small_size() {
    if !tribune_testkit::is_root() {
        let _ = writeln!(
            std::io::stderr(),
            "skipped: bench messages --cross-host needs root (network namespaces)"
        );
        return;
    }
    let (v, _) = bench(&[SMALL_MESSAGES, &["--cross-host"]].concat());
    let r = &v["result"];
    assert_eq!(r["config"]["cross_host"], true, "{v}");
    let senders = r["flood"]["senders"].as_array().expect("flood senders");
    assert!(
        senders
            .iter()
            .all(|s| s["delivered_per_s"].as_f64() > Some(0.0)),
        "every sender got something through to the other host: {v}"
    );
    assert!(r["priority"]["high_per_s"].as_f64() > Some(0.0), "{v}");
    assert!(
        r["receiver_mediator_rss_mib"].as_f64() > Some(0.0),
        "the receivers' agent is measured too: {v}"
    );
    assert_queueing_read(r, 2);
}

/// The well-behaved senders' queueing was read from `hops` agents' histograms, each holding
/// their messages.
fn assert_queueing_read(r: &serde_json::Value, hops: usize) {
    let q = &r["flood"]["queueing"];
    let read = q["hops"].as_array().expect("queueing read from the agents");
    assert_eq!(read.len(), hops, "{q}");
    for h in read {
        assert!(h["messages"].as_u64() > Some(0), "{q}");
        assert!(h["p99_ms"].as_f64() >= h["p50_ms"].as_f64(), "{q}");
    }
    let at_least = q["within_goal_pct_at_least"].as_f64().expect("a bound");
    assert!((0.0..=100.0).contains(&at_least), "{q}");
}

#[test]
fn messages_runs_at_a_small_size() {
    let (v, _) = bench(SMALL_MESSAGES);
    assert_eq!(v["scenario"], "messages");
    let r = &v["result"];
    let senders = r["flood"]["senders"].as_array().expect("flood senders");
    assert_eq!(senders.len(), 10, "{v}");
    assert!(
        senders
            .iter()
            .all(|s| s["delivered_per_s"].as_f64() > Some(0.0)),
        "every sender got something through: {v}"
    );
    // Fair shares are of what each offered: a well-behaved sender is owed at most that, and
    // its sends' answer times are measured.
    for s in &senders[1..] {
        assert!(
            s["fair_share_per_s"].as_f64() <= s["offered_per_s"].as_f64().map(|o| o + 1e-6),
            "{s}"
        );
        assert!(s["send_ms"]["n"].as_u64() > Some(0), "{s}");
    }
    assert!(r["flood"]["offered_min_pct"].as_f64() > Some(0.0), "{v}");
    assert_eq!(r["weighted"]["senders"].as_array().map(Vec::len), Some(3));
    assert_queueing_read(r, 1);
    assert!(r["priority"]["high_per_s"].as_f64() > Some(0.0), "{v}");
    let t = r["throughput"].as_array().expect("throughput");
    assert_eq!(t.len(), 2);
    assert!(
        t.iter()
            .all(|row| row["mediator_msgs_per_s"].as_f64() > Some(0.0)
                && row["plain_relay_msgs_per_s"].as_f64() > Some(0.0)),
        "{v}"
    );
    assert!(r["mediator_rss_mib"].as_f64() > Some(0.0), "{v}");
}
