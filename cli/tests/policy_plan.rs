//! `tribune policy plan` end to end, as root: a controller, a real host agent, two sim-TEE
//! enclaves — `busy` (spins, ~1 core) and `idle` (sleeps) — under loose policies (4 cores).
//!
//! What is compared, exactly:
//! 1. **Enclaves.** `tribune policy plan tight.tribune` (CPU limit 300m for both) over the
//!    usage recorded before it is applied names the enclaves it would throttle; the policy is
//!    then applied and the live loop runs on: the enclaves the live loop throttles (ladder
//!    actions in the log after the apply) are exactly those the plan named.
//! 2. **Windows.** A plan is a replay of recorded windows, so the windows it can be held to
//!    are windows that were recorded under the policy it plans: once the live loop has run the
//!    tight policy for a while, the span after its throttle is replayed with the tight policy
//!    (the stored one, planned again): in every window of that span, for both enclaves, the
//!    step the planner decides equals the step the log shows in force (no difference at all,
//!    throttled windows equal window for window). The windows of the first plan (recorded
//!    under the loose policy) are not compared with the live run's: those are different
//!    windows, with different usage (the live cap changed what was used).
//! 3. **Not trivially equal.** The same post-apply span planned with the loose policies
//!    shows busy released in every window (throttle → none): the comparison can fail.
//!
//! Plus the API's refusals: a policy with a checker error, an unknown enclave, a period
//! beyond the planner's retention — each a 400 saying what and where.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_controller::api::plan::PolicyPlan;
use tribune_controller::state::Step;
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_client::ControlServiceClient;

const LOOSE: &str = r#"
policy "pp-busy" {
  match tenant == "busy"
  guarantee { cpu = 100m }
  limit { cpu = 4 }
  on over_limit { throttle now }
}
policy "pp-idle" {
  match tenant == "idle"
  guarantee { cpu = 100m }
  limit { cpu = 4 }
  on over_limit { throttle now }
}
"#;

const TIGHT: &str = r#"
policy "pp-busy" {
  match tenant == "busy"
  guarantee { cpu = 100m }
  limit { cpu = 300m }
  on over_limit { throttle now }
}
policy "pp-idle" {
  match tenant == "idle"
  guarantee { cpu = 100m }
  limit { cpu = 300m }
  on over_limit { throttle now }
}
"#;

/// One policy of a two-policy source, by name, as its own source.
fn one(src: &str, name: &str) -> String {
    let start = src.find(&format!("policy \"{name}\"")).expect("policy");
    let end = src[start + 1..]
        .find("policy \"")
        .map_or(src.len(), |i| start + 1 + i);
    src[start..end].to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn plan(c: &Cluster, file: &std::path::Path, since_s: i64) -> PolicyPlan {
    let o = c.cli(&[
        "policy",
        "plan",
        file.to_str().expect("path"),
        "--since",
        &format!("{since_s}s"),
        "-o",
        "json",
    ]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", common::output_text(&o)))
}

fn digests(all: &[Value], id: &str, after: u64) -> usize {
    all.iter()
        .filter(|e| e["subject"] == id && e["kind"] == "usage_digest")
        .filter(|e| e["index"].as_u64().is_some_and(|i| i > after))
        .count()
}

fn ladder_to(all: &[Value], id: &str, step: &str, after: u64) -> Option<Value> {
    all.iter()
        .find(|e| {
            e["subject"] == id
                && e["kind"] == "action"
                && e["detail"]["action"] == step
                && e["index"].as_u64().is_some_and(|i| i > after)
        })
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_names_the_enclaves_the_live_loop_then_throttles() {
    if common::skip_unless_root(
        "a_plan_names_the_enclaves_the_live_loop_then_throttles",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    for name in ["pp-busy", "pp-idle"] {
        let (s, b) = c.put_policy(leader, name, &one(LOOSE, name), None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    for (id, cmd) in [
        ("busy", ["/bin/sh", "-c", "while :; do :; done"]),
        ("idle", ["/bin/sh", "-c", "while :; do sleep 1; done"]),
    ] {
        c.put_process_enclave(leader, id, "h1", &cmd).await;
    }
    let dir = c.dir.path().to_path_buf();
    let tight = dir.join("tight.tribune");
    let loose = dir.join("loose.tribune");
    std::fs::write(&tight, TIGHT).expect("write");
    std::fs::write(&loose, LOOSE).expect("write");
    let controllers = c.nodes.values().map(|n| n.addr.clone()).collect();
    let _agent = common::start_agent(&c, "plan", "h1", controllers, vec![]);
    let started = now_ms();

    // Recorded usage under the loose policies: 8 windows of each.
    let entries = || async { c.log_entries(leader).await.unwrap_or_default() };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = entries().await;
        if digests(&all, "busy", 0) >= 8 && digests(&all, "idle", 0) >= 8 {
            break;
        }
        assert!(Instant::now() < deadline, "no usage windows\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. The plan over what was recorded.
    let since = (now_ms() - started) / 1000 + 5;
    let before = plan(&c, &tight, since);
    assert_eq!(before.replaced, ["pp-busy", "pp-idle"]);
    let by_id = |p: &PolicyPlan, id: &str| {
        p.enclaves
            .iter()
            .find(|e| e.enclave == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in the plan: {p:?}"))
    };
    let busy = by_id(&before, "busy");
    let idle = by_id(&before, "idle");
    assert!(busy.windows >= 8, "{busy:?}");
    assert_eq!(busy.actual.throttles, 0, "nothing happened under 4 cores");
    assert_eq!(busy.planned.throttles, 1, "{busy:?}");
    assert!(busy.changed);
    assert!(
        busy.differences
            .iter()
            .all(|d| d.actual == Step::None && d.planned == Step::Throttle),
        "{busy:?}"
    );
    assert_eq!(idle.planned.throttles, 0, "{idle:?}");
    assert!(idle.differences.is_empty(), "{idle:?}");
    assert_eq!(idle.limits_after.cpu_millicores, 300);
    let predicted: Vec<&str> = before
        .enclaves
        .iter()
        .filter(|e| e.planned.throttles > 0)
        .map(|e| e.enclave.as_str())
        .collect();
    eprintln!(
        "plan before the apply: {} windows; would throttle {predicted:?}; busy from window seq {:?}",
        before.windows,
        busy.planned
            .actions
            .first()
            .map(|a| (a.first_seq, a.last_seq))
    );
    // The text form says the same, escaped.
    let o = c.cli(&[
        "policy",
        "plan",
        tight.to_str().expect("path"),
        "--since",
        &format!("{since}s"),
    ]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    eprintln!("{said}");
    assert!(
        said.contains("busy (host h1)") && said.contains("would throttle"),
        "{said}"
    );

    // Apply, and let the live loop run the tight policy.
    let applied_at = entries().await.len() as u64;
    for name in ["pp-busy", "pp-idle"] {
        let (s, b) = c.put_policy(leader, name, &one(TIGHT, name), None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    let deadline = Instant::now() + DEADLINE;
    let throttle = loop {
        let all = entries().await;
        if let Some(t) = ladder_to(&all, "busy", "throttle", applied_at) {
            let at = t["index"].as_u64().unwrap_or(u64::MAX);
            // Enough for a release after `RELEASE_AFTER_MS` to fall inside the span (part 3).
            if digests(&all, "busy", at) >= 18 {
                break t;
            }
        }
        assert!(Instant::now() < deadline, "no live throttle\n{}", c.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let all = entries().await;
    let live: Vec<&str> = ["busy", "idle"]
        .into_iter()
        .filter(|id| ladder_to(&all, id, "throttle", applied_at).is_some())
        .collect();
    assert_eq!(
        live, predicted,
        "the live loop throttled what the plan named"
    );
    assert!(
        !all.iter()
            .any(|e| e["subject"] == "idle" && e["kind"] == "action"),
        "idle was never acted on"
    );

    // 2. The span after the live throttle, replayed with the policy in force.
    let throttled_at = throttle["at_ms"].as_i64().expect("at_ms");
    let since = (now_ms() - throttled_at) / 1000;
    assert!(since >= 1);
    let after = plan(&c, &tight, since);
    let busy = by_id(&after, "busy");
    let idle = by_id(&after, "idle");
    assert!(busy.windows >= 15, "{busy:?}");
    assert!(busy.differences.is_empty(), "{busy:?}");
    assert_eq!(busy.actual.throttled_windows, busy.windows, "{busy:?}");
    assert_eq!(busy.planned.throttled_windows, busy.windows, "{busy:?}");
    assert_eq!(busy.actual.enforced, busy.planned.enforced);
    assert!(idle.windows >= 3, "{idle:?}");
    assert!(idle.differences.is_empty(), "{idle:?}");
    assert_eq!(idle.planned.throttled_windows, 0);
    assert!(!busy.changed && !idle.changed, "{after:?}");
    eprintln!(
        "after the apply: {} windows of busy replayed, throttled in all, as live",
        busy.windows
    );

    // The gRPC twin answers the same plan (its JSON is the same type).
    let files = tribune_testkit::tls::client_files(c.tls_dir.as_deref().expect("a TLS cluster"));
    let tls = tribune_tls::ClientTls::from_files(&files).expect("client tls");
    let channel = tls
        .endpoint(&c.nodes[&leader].addr)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut g = ControlServiceClient::new(channel);
    let reply = g
        .plan_policies(pb::PlanPoliciesRequest {
            source: TIGHT.into(),
            since_s: Some(since as u64),
            enclaves: Some("busy".into()),
        })
        .await
        .expect("PlanPolicies")
        .into_inner();
    let twin: PolicyPlan = serde_json::from_slice(&reply.plan_json).expect("a plan");
    assert_eq!(twin.enclaves.len(), 1, "only busy was selected");
    let b = &twin.enclaves[0];
    assert_eq!(b.enclave, "busy");
    assert!(
        b.differences.is_empty() && b.planned.throttled_windows == b.windows,
        "{b:?}"
    );

    // 3. The same span planned with the loose policies: as live, busy's cap goes up to the
    // new limit at once, and it is released once it has stayed backed off (its recorded,
    // capped usage is far below the new cap) for `RELEASE_AFTER_MS`; from then on every
    // window differs (throttle → none).
    let undo = plan(&c, &loose, since);
    let busy = by_id(&undo, "busy");
    assert_eq!(busy.planned.releases, 1, "{busy:?}");
    assert_eq!(busy.planned.actions[0].cpu_cap_millicores, 0, "{busy:?}");
    let hold = tribune_controller::attest::decide::RELEASE_AFTER_MS / 1000;
    let held = busy.planned.throttled_windows as i64;
    assert!(
        (hold - 2..=hold + 3).contains(&held),
        "held {held} windows, release after {hold} s: {busy:?}"
    );
    assert!(
        busy.differences
            .iter()
            .all(|d| d.actual == Step::Throttle && d.planned == Step::None),
        "{busy:?}"
    );
    assert_eq!(
        busy.differences.iter().map(|d| d.windows).sum::<u64>() + busy.planned.throttled_windows,
        busy.windows
    );
    assert!(busy.changed);

    // Refusals, each saying what and where.
    let bad = dir.join("bad.tribune");
    std::fs::write(&bad, "policy \"x\" {\n  limit { cpu = banana }\n}\n").expect("write");
    let o = c.cli(&["policy", "plan", bad.to_str().expect("path")]);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));
    assert!(
        common::output_text(&o).contains("bad.tribune:2:"),
        "{}",
        common::output_text(&o)
    );
    let o = c.cli(&[
        "policy",
        "plan",
        tight.to_str().expect("path"),
        "--enclaves",
        "busy,nosuch",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));
    assert!(
        common::output_text(&o).contains("unknown enclave \\\"nosuch\\\"")
            || common::output_text(&o).contains("unknown enclave \"nosuch\""),
        "{}",
        common::output_text(&o)
    );
    let o = c.cli(&[
        "policy",
        "plan",
        tight.to_str().expect("path"),
        "--since",
        "2d",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", common::output_text(&o));
    assert!(
        common::output_text(&o).contains("retention"),
        "{}",
        common::output_text(&o)
    );
    // The API's own check (the CLI checks first, so it is asked directly).
    let client = reqwest_client(&c);
    let r = client
        .post(c.url(leader, "/v1/policies/plan"))
        .json(&json!({"source": "policy \"x\" {\n  limit { cpu = banana }\n}\n"}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["diagnostics"][0]["line"], 2, "{body}");
    // A policy named `plan` is still a policy.
    let (s, b) = c
        .put_policy(
            leader,
            "plan",
            "policy \"plan\" {\n  match tenant == \"z\"\n  limit { cpu = 1 }\n}\n",
            None,
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let (s, b) = c.get_policy(leader, "plan").await;
    assert_eq!(s, 200, "{b}");
}

fn reqwest_client(c: &Cluster) -> reqwest::Client {
    c.http.clone()
}
