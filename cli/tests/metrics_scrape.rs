//! `/metrics` end to end: a 3-controller cluster (mTLS) and a host agent streaming to it under
//! load (a 10 Hz usage stream from a greedy enclave). Every scrape parses with a Prometheus
//! text-format parser (the `prometheus-parse` crate) and passes `promtool check metrics`
//! (Debian's `prometheus` package; `skipped:` when it is absent); the named series move:
//! usage reports verified rise between two scrapes, the throttle decision increments the
//! ladder counter, and Raft, the write path and the agent report what they did.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use serde_json::json;

const GREEDY_POLICY: &str = r#"
policy "metrics-greedy" {
  match tenant == "greedy"
  guarantee { cpu = 100m }
  limit { cpu = 200m  memory = 256MiB }
  on over_limit { throttle now; suspend after 10m }
}
"#;

/// One scrape: the text as served and its samples, `name{labels}` → value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("not Prometheus text format: {e}\n{text}"));
        assert!(!parsed.samples.is_empty(), "no samples in\n{text}");
        let mut samples = BTreeMap::new();
        for s in parsed.samples {
            let mut labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            labels.sort();
            let value = match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                // Its `_count` and `_sum` are samples of their own.
                prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => {
                    continue;
                }
            };
            samples.insert(format!("{}{{{}}}", s.metric, labels.join(",")), value);
        }
        Scrape { text, samples }
    }

    /// The value of `name` with exactly `labels` (`k=v,…`, sorted), 0 when absent.
    fn get(&self, name: &str, labels: &str) -> f64 {
        self.samples
            .get(&format!("{name}{{{labels}}}"))
            .copied()
            .unwrap_or(0.0)
    }

    /// The sum of `name` over every label set.
    fn sum(&self, name: &str) -> f64 {
        let prefix = format!("{name}{{");
        self.samples
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v)
            .sum()
    }
}

async fn scrape(http: &reqwest::Client, url: &str) -> Scrape {
    let r = http
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status().as_u16(), 200, "GET {url}");
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{url}: {ct}");
    Scrape::parse(r.text().await.expect("body"))
}

/// The controllers' scrapes, by id.
async fn scrape_controllers(c: &Cluster) -> BTreeMap<u64, Scrape> {
    let mut out = BTreeMap::new();
    for id in c.running() {
        out.insert(id, scrape(&c.http, &c.url(id, "/metrics")).await);
    }
    out
}

fn total(all: &BTreeMap<u64, Scrape>, name: &str) -> f64 {
    all.values().map(|s| s.sum(name)).sum()
}

/// `promtool check metrics` on `text`: no lint problem. `false` (after `skipped:`) without
/// promtool.
fn promtool_check_metrics(what: &str, text: &str) -> bool {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        tribune_testkit::say_skipped(&format!(
            "promtool check metrics on {what}: promtool is not installed (Debian package `prometheus`; scripts/test installs it)"
        ));
        return false;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what}: {}{}\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

/// Waits until `check` holds on a fresh scrape of every controller; panics with `what`.
async fn wait_controllers(
    c: &Cluster,
    what: &str,
    check: impl Fn(&BTreeMap<u64, Scrape>) -> bool,
) -> BTreeMap<u64, Scrape> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = scrape_controllers(c).await;
        if check(&all) {
            return all;
        }
        if Instant::now() > deadline {
            let texts: Vec<&str> = all.values().map(|s| s.text.as_str()).collect();
            panic!(
                "{what}: not within {DEADLINE:?}\n{}",
                texts.join("\n----\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_cluster_and_an_agent_under_load_move_and_pass_promtool() {
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let (s, b) = c
        .put_policy(leader, "metrics-greedy", GREEDY_POLICY, None)
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    c.put_json(
        leader,
        "/v1/enclaves/spin",
        json!({
            "id": "spin", "tenant": "greedy", "tee": "sim",
            "placement": {"host": "hm", "epoch": 1},
            "launch": {"process": {"cmd": ["/bin/sh", "-c", "while :; do :; done"]}},
        }),
    )
    .await;

    // The agent: enforcing as root, observe-only otherwise (the decisions are the same).
    let metrics_addr = tribune_testkit::ports::free_addr();
    let mut extra = vec!["--metrics-listen".to_string(), metrics_addr.clone()];
    if !tribune_testkit::is_root() {
        extra.push("--observe-only".into());
    }
    let controllers = c.nodes.values().map(|n| n.addr.clone()).collect();
    let agent = common::start_agent(&c, "metrics", "hm", controllers, extra);

    // Reports flow and verify; the throttle is decided and committed.
    let first = wait_controllers(&c, "reports verified and a throttle counted", |all| {
        total(all, "tribune_attest_reports_verified_total") > 0.0
            && total(all, "tribune_decision_ladder_steps_total") > 0.0
    })
    .await;
    let throttles: f64 = first
        .values()
        .map(|s| s.get("tribune_decision_ladder_steps_total", "step=throttle"))
        .sum();
    assert!(throttles >= 1.0, "no throttle step counted");
    let actions: f64 = first
        .values()
        .map(|s| s.get("tribune_decision_log_entries_total", "kind=action"))
        .sum();
    assert!(actions >= 1.0, "no action entry counted");
    // Under load the count keeps rising.
    let verified = total(&first, "tribune_attest_reports_verified_total");
    // Checkpoints (every second) verified and their digests committed, timed.
    let second = wait_controllers(
        &c,
        "more reports verified, checkpoints and digests timed",
        |all| {
            total(all, "tribune_attest_reports_verified_total") > verified
                && total(
                    all,
                    "tribune_attest_checkpoint_verify_duration_seconds_count",
                ) > 0.0
                && total(all, "tribune_attest_digest_commit_duration_seconds_count") > 0.0
        },
    )
    .await;
    assert_eq!(
        total(&second, "tribune_attest_streams_connected"),
        1.0,
        "one agent stream, on one controller"
    );
    assert!(total(&second, "tribune_attest_plans_pushed_total") > 0.0);

    // Raft: one leader that all agree on, a term, fsyncs timed, batches recorded.
    let leaders: Vec<u64> = second
        .iter()
        .filter(|(_, s)| s.get("tribune_raft_is_leader", "") == 1.0)
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader: {leaders:?}");
    for (id, s) in &second {
        assert_eq!(
            s.get("tribune_raft_leader_id", ""),
            leaders[0] as f64,
            "{id}"
        );
        assert!(s.get("tribune_raft_term", "") >= 1.0, "{id}");
        assert!(s.get("tribune_raft_applied_index", "") >= 1.0, "{id}");
        assert!(
            s.get("tribune_raft_leader_changes_total", "") >= 1.0,
            "{id}"
        );
        assert!(
            s.get("tribune_raft_log_fsync_duration_seconds_count", "") >= 1.0,
            "{id}: no fsync timed"
        );
    }
    let leader_scrape = &second[&leaders[0]];
    assert!(leader_scrape.get("tribune_raft_batch_commands_count", "") >= 1.0);
    // The write path: the enclave PUT counted by its route template, never its path.
    let puts: f64 = second
        .values()
        .map(|s| {
            s.get(
                "tribune_api_requests_total",
                "code=200,method=PUT,route=/v1/enclaves/:id",
            ) + s.get(
                "tribune_api_requests_total",
                "code=201,method=PUT,route=/v1/enclaves/:id",
            )
        })
        .sum();
    let keys: Vec<&String> = second
        .values()
        .flat_map(|s| s.samples.keys())
        .filter(|k| k.starts_with("tribune_api_requests_total"))
        .collect();
    assert!(puts >= 1.0, "the enclave PUT is not counted: {keys:?}");
    assert!(
        !second
            .values()
            .any(|s| s.text.contains("/v1/enclaves/spin")),
        "a request path leaked into a label"
    );
    assert!(total(&second, "tribune_api_writes_total") > 0.0);
    // Raft's transport is counted by service, on every controller.
    for (id, s) in &second {
        assert!(
            s.get(
                "tribune_api_requests_total",
                "code=200,method=POST,route=/tribune.v1.RaftService/*"
            ) >= 1.0,
            "{id}: Raft RPCs not counted"
        );
    }

    // The agent: link up, the plan applied, windows handed to the link and rising.
    let agent_url = format!("http://{metrics_addr}/metrics");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + DEADLINE;
    let a1 = loop {
        if let Ok(r) = http.get(&agent_url).send().await
            && r.status().is_success()
        {
            let s = Scrape::parse(r.text().await.expect("body"));
            if s.get("tribune_agent_plan_version", "") >= 1.0
                && s.get("tribune_agent_windows_sent_total", "") > 0.0
            {
                break s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the agent's metrics did not show a plan and windows: {}",
            agent.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(a1.get("tribune_agent_link_up", ""), 1.0);
    assert!(a1.get("tribune_agent_plans_applied_total", "") >= 1.0);
    assert!(a1.get("tribune_agent_enforcement_duration_seconds_count", "") >= 1.0);
    let deadline = Instant::now() + DEADLINE;
    let a2 = loop {
        let s = scrape(&http, &agent_url).await;
        if s.get("tribune_agent_windows_sent_total", "")
            > a1.get("tribune_agent_windows_sent_total", "")
            && s.samples
                .keys()
                .any(|k| k.starts_with("tribune_agent_enclave_cpu_millicores{enclave=spin"))
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "agent windows do not rise\n{}",
            s.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // promtool's lint on every scrape.
    for (id, s) in &second {
        if !promtool_check_metrics(&format!("controller {id}"), &s.text) {
            return;
        }
    }
    promtool_check_metrics("the agent", &a2.text);
}

/// Prometheus asks for OpenMetrics first; it gets it, ending in `# EOF`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_is_served_when_asked_for() {
    let c = Cluster::start(1, &[]);
    let leader = c.wait_leader().await;
    let r = c
        .http
        .get(c.url(leader, "/metrics"))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status().as_u16(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    let text = r.text().await.expect("body");
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE tribune_raft_leader_changes counter"),
        "{text}"
    );
}
