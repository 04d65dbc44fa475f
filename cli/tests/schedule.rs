//! The scheduler through the API and the CLI, on a real controller with host records (no
//! agents: `schedule_agents.rs` has those): `POST /v1/enclaves` places where there is room,
//! an unplaceable spec gets every host's reason, cordoned hosts are left out, racing creates
//! never over-commit a host, and preemption suspends the lower priority with a log entry for
//! both enclaves.

mod common;

use std::collections::BTreeMap;

use common::Cluster;
use serde_json::{Value, json};
use tribune_proto::v1 as pb;
use tribune_proto::v1::control_service_client::ControlServiceClient;

async fn post(c: &Cluster, node: u64, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = c.http.post(c.url(node, path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("request");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A host record with `cores` cores and 16 GiB, labelled `pool=POOL`.
async fn host(c: &Cluster, node: u64, id: &str, cores: u64, pool: &str) {
    c.put_json(
        node,
        &format!("/v1/hosts/{id}"),
        json!({"id": id, "address": "", "tee": "sim", "labels": {"pool": pool},
               "capacity": {"cpu_millicores": cores * 1000, "memory_bytes": 16u64 << 30}}),
    )
    .await;
}

/// A new enclave asking for `millicores`, only on hosts of `pool`.
fn spec(id: &str, millicores: u64, pool: &str) -> Value {
    json!({"id": id, "tenant": "acme", "tee": "sim",
           "requested": {"cpu_millicores": millicores},
           "scheduling": {"host_selector": {"pool": pool}}})
}

async fn entries(c: &Cluster, node: u64) -> Vec<Value> {
    c.log_entries(node).await.expect("log entries")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_are_placed_where_there_is_room_and_explained_where_there_is_none() {
    let c = Cluster::start(1, &[]);
    let n = c.wait_leader().await;
    host(&c, n, "h1", 2, "a").await;
    host(&c, n, "h2", 3, "a").await;

    // Fits nowhere: 409 with the reason per host.
    let (s, b) = post(&c, n, "/v1/enclaves", Some(spec("big", 8000, "a"))).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/unplaceable")),
        "{b}"
    );
    let detail = b["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no host with 8 cores free: h2 has 3 cores, h1 has 2 cores"),
        "{detail}"
    );
    let (s, _) = c.get_json(n, "/v1/enclaves/big").await.expect("get");
    assert_eq!(s, 404, "an unplaceable enclave is not recorded");

    // Only h2 has 2.5 cores: placed there, epoch 1, logged.
    let (s, e) = post(&c, n, "/v1/enclaves", Some(spec("mid", 2500, "a"))).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["placement"], json!({"host": "h2", "epoch": 1}), "{e}");
    assert_eq!(e["state"], "pending");
    let log = entries(&c, n).await;
    assert!(
        log.iter().any(|x| x["kind"] == "migration"
            && x["subject"] == "mid"
            && x["detail"]["op"] == "place"
            && x["detail"]["host"] == "h2"
            && x["detail"]["epoch"] == 1),
        "no placement entry for mid"
    );
    // A placement named in the body is refused: the scheduler places.
    let mut named = spec("named", 100, "a");
    named["placement"] = json!({"host": "h1", "epoch": 1});
    let (s, b) = post(&c, n, "/v1/enclaves", Some(named)).await;
    assert_eq!(s, 400, "{b}");
    // A second create of the same id: 409 naming its version.
    let (s, b) = post(&c, n, "/v1/enclaves", Some(spec("mid", 100, "a"))).await;
    assert_eq!(s, 409, "{b}");

    // The CLI: flags, and `ls` shows host and epoch.
    let out = c.cli(&[
        "enclave",
        "create",
        "--id",
        "cli",
        "--tenant",
        "acme",
        "--cpu",
        "1500m",
        "--host-selector",
        "pool=a",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["placement"]["host"], "h1", "{v}");
    let out = c.cli(&["enclave", "ls"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("HOST") && text.contains("EPOCH"), "{text}");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cli "))
        .unwrap_or("");
    assert!(line.contains("h1") && line.contains(" 1 "), "{text}");
    // The CLI on an unplaceable spec: exit 1 with the reason.
    let out = c.cli(&[
        "enclave",
        "create",
        "--id",
        "huge",
        "--tenant",
        "acme",
        "--cpu",
        "64",
        "--host-selector",
        "pool=a",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        common::output_text(&out).contains("no host with 64 cores free"),
        "{}",
        common::output_text(&out)
    );
    // From a file (YAML).
    let f = c.dir.path().join("enclave.yaml");
    std::fs::write(
        &f,
        "id: file\ntenant: acme\ntee: sim\nrequested: {cpu_millicores: 100}\nscheduling: {host_selector: {pool: a}}\n",
    )
    .expect("write");
    let out = c.cli(&["enclave", "create", f.to_str().unwrap_or_default()]);
    assert!(out.status.success(), "{}", common::output_text(&out));

    // gRPC CreateEnclave: unplaceable is ABORTED with the same reason.
    let mut g = ControlServiceClient::connect(c.url(n, ""))
        .await
        .expect("grpc");
    let err = g
        .create_enclave(pb::CreateEnclaveRequest {
            enclave: Some(pb::Enclave {
                id: "grpc-big".into(),
                tenant: "acme".into(),
                tee: "sim".into(),
                requested: Some(pb::Resources {
                    cpu_millicores: 9000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect_err("unplaceable");
    assert_eq!(err.code(), tonic::Code::Aborted);
    assert!(err.message().contains("no host with 9 cores free"), "{err}");
    let ok = g
        .create_enclave(pb::CreateEnclaveRequest {
            enclave: Some(pb::Enclave {
                id: "grpc".into(),
                tenant: "acme".into(),
                tee: "sim".into(),
                requested: Some(pb::Resources {
                    cpu_millicores: 100,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("placed")
        .into_inner();
    assert_eq!(ok.placement.map(|p| p.epoch), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_hosts_get_nothing_new_until_uncordoned() {
    let c = Cluster::start(1, &[]);
    let n = c.wait_leader().await;
    host(&c, n, "c1", 4, "c").await;
    host(&c, n, "c2", 4, "c").await;
    let out = c.cli(&["host", "cordon", "c1"]);
    assert!(out.status.success(), "{}", common::output_text(&out));
    assert!(common::output_text(&out).contains("cordoned"));
    // Bin-packing would pick c1 (same fill, lower id); cordoned, c2 gets both.
    for id in ["x1", "x2"] {
        let (s, e) = post(&c, n, "/v1/enclaves", Some(spec(id, 1000, "c"))).await;
        assert_eq!(s, 201, "{e}");
        assert_eq!(e["placement"]["host"], "c2", "{e}");
    }
    let (s, _) = post(&c, n, "/v1/hosts/c2/cordon", None).await;
    assert_eq!(s, 200);
    let (s, b) = post(&c, n, "/v1/enclaves", Some(spec("x3", 1000, "c"))).await;
    assert_eq!(s, 409, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .is_some_and(|d| d.contains("cordoned or draining: c1 (cordoned), c2 (cordoned)")),
        "{b}"
    );
    // `host ls` says so; an uncordon lets it in again; both changes are logged.
    let out = c.cli(&["host", "ls"]);
    let text = common::output_text(&out);
    assert!(
        text.contains("SCHEDULABLE") && text.contains("cordoned"),
        "{text}"
    );
    let (s, h) = post(&c, n, "/v1/hosts/c1/uncordon", None).await;
    assert_eq!((s, h["schedulable"].as_str()), (200, Some("ready")), "{h}");
    let (s, e) = post(&c, n, "/v1/enclaves", Some(spec("x3", 1000, "c"))).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["placement"]["host"], "c1", "{e}");
    let ops: Vec<String> = entries(&c, n)
        .await
        .iter()
        .filter(|x| x["kind"] == "host_change")
        .map(|x| format!("{}:{}", x["subject"], x["detail"]["op"]))
        .collect();
    for want in [r#""c1":"cordon""#, r#""c2":"cordon""#, r#""c1":"uncordon""#] {
        assert!(ops.iter().any(|o| o == want), "{want} not in {ops:?}");
    }
    let (s, _) = post(&c, n, "/v1/hosts/nope/cordon", None).await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_creates_never_put_a_host_over_its_capacity() {
    // Three controllers, creates sent to all of them at once: every one plans over the same
    // state; the apply-time re-check refuses whichever comes second, and it plans again.
    let c = Cluster::start(3, &[]);
    let n = c.wait_leader().await;
    host(&c, n, "r1", 4, "r").await;
    host(&c, n, "r2", 3, "r").await;
    let nodes: Vec<u64> = c.running();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let node = nodes[i % nodes.len()];
        let url = c.url(node, "/v1/enclaves");
        let http = c.http.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&spec(&format!("race{i:02}"), 1000, "r"))
                .send()
                .await
                .expect("request");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }));
    }
    let mut placed = 0;
    for t in tasks {
        let (s, b) = t.await.expect("task");
        match s {
            201 => placed += 1,
            409 => assert!(
                b["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("no host with 1 cores free")
                        || d.contains("other writes took the room")),
                "{b}"
            ),
            _ => panic!("{s} {b}"),
        }
    }
    assert_eq!(placed, 7, "4 + 3 cores of room, 1 core each");
    let (_, all) = c.get_json(n, "/v1/enclaves").await.expect("list");
    let mut per_host: BTreeMap<String, u64> = BTreeMap::new();
    for e in all.as_array().cloned().unwrap_or_default() {
        if let Some(h) = e["placement"]["host"].as_str() {
            *per_host.entry(h.into()).or_default() +=
                e["requested"]["cpu_millicores"].as_u64().unwrap_or(0);
        }
    }
    assert_eq!(per_host.get("r1").copied(), Some(4000), "{per_host:?}");
    assert_eq!(per_host.get("r2").copied(), Some(3000), "{per_host:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_enclave_displaces_a_lower_one_and_the_log_says_so() {
    let c = Cluster::start(1, &[]);
    let n = c.wait_leader().await;
    host(&c, n, "p1", 2, "p").await;
    let mut low = spec("low", 2000, "p");
    low["priority"] = json!(10);
    let (s, b) = post(&c, n, "/v1/enclaves", Some(low)).await;
    assert_eq!(s, 201, "{b}");
    // Same priority and no preempt: unplaceable.
    let mut high = spec("high", 2000, "p");
    high["priority"] = json!(50);
    let (s, b) = post(&c, n, "/v1/enclaves", Some(high.clone())).await;
    assert_eq!(s, 409, "without preempt nothing is displaced: {b}");
    high["scheduling"]["preempt"] = json!(true);
    let (s, e) = post(&c, n, "/v1/enclaves", Some(high)).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["placement"]["host"], "p1");
    // The displaced one: suspended on its host, not stopped, not deleted.
    let (_, l) = c.get_json(n, "/v1/enclaves/low").await.expect("low");
    assert_eq!(l["state"], "suspended", "{l}");
    assert_eq!(l["placement"]["host"], "p1", "{l}");
    let log = entries(&c, n).await;
    assert!(
        log.iter().any(|x| x["kind"] == "migration"
            && x["subject"] == "high"
            && x["detail"]["op"] == "place"
            && x["detail"]["displaced"] == json!(["low"])),
        "no placement entry naming the displaced enclave"
    );
    assert!(
        log.iter().any(|x| x["kind"] == "migration"
            && x["subject"] == "low"
            && x["detail"]["op"] == "preempted"
            && x["detail"]["by"] == "high"
            && x["detail"]["to"].is_null()
            && x["detail"]["by_priority"] == 50
            && x["detail"]["priority"] == 10),
        "no preemption entry for the displaced enclave"
    );
    // Resuming it while its guarantee does not fit is refused, with the reason.
    let out = c.cli(&["enclave", "resume", "low"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        common::output_text(&out).contains("suspended by a preemption"),
        "{}",
        common::output_text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policys_priority_decides_preemption_and_a_spec_may_not_ask_more() {
    let c = Cluster::start(1, &[]);
    let n = c.wait_leader().await;
    host(&c, n, "q1", 2, "q").await;
    for (name, source) in [
        (
            "gold",
            "policy \"gold\" {\n  match labels.tier == \"gold\"\n  priority 800 preempt\n}\n",
        ),
        (
            "batch",
            "policy \"batch\" {\n  match labels.tier == \"batch\"\n  priority 5\n}\n",
        ),
    ] {
        let (s, b) = c.put_policy(n, name, source, None).await;
        assert!(s == 200 || s == 201, "{s} {b}");
    }
    let tiered = |id: &str, tier: &str| {
        let mut e = spec(id, 2000, "q");
        e["labels"] = json!({"tier": tier});
        e
    };
    // A batch spec asking priority 900 or preemption is refused: its policy gives 5, no preempt.
    let mut greedy = tiered("greedy", "batch");
    greedy["priority"] = json!(900);
    let (s, b) = post(&c, n, "/v1/enclaves", Some(greedy)).await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/priority-not-granted")),
        "{b}"
    );
    let detail = b["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("policy \"batch\" (line 3) gives enclave \"greedy\" priority 5"),
        "{detail}"
    );
    let mut pushy = tiered("pushy", "batch");
    pushy["scheduling"]["preempt"] = json!(true);
    let (s, b) = post(&c, n, "/v1/enclaves", Some(pushy)).await;
    assert_eq!(s, 422, "{b}");
    let (s, _) = c.get_json(n, "/v1/enclaves/pushy").await.expect("get");
    assert_eq!(s, 404, "a refused create records nothing");

    // The batch one fills the host; the gold one's spec asks nothing, its policy preempts.
    let (s, b) = post(&c, n, "/v1/enclaves", Some(tiered("batch-1", "batch"))).await;
    assert_eq!(s, 201, "{b}");
    let (s, e) = post(&c, n, "/v1/enclaves", Some(tiered("gold-1", "gold"))).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["placement"]["host"], "q1");
    assert_eq!(e["priority"], 0, "the record keeps the spec as written");
    let (_, l) = c
        .get_json(n, "/v1/enclaves/batch-1")
        .await
        .expect("batch-1");
    assert_eq!(l["state"], "suspended", "{l}");
    let log = entries(&c, n).await;
    assert!(
        log.iter().any(|x| x["subject"] == "gold-1"
            && x["detail"]["op"] == "place"
            && x["detail"]["priority"] == 800
            && x["detail"]["displaced"] == json!(["batch-1"])),
        "no placement entry with the policy's priority"
    );
    assert!(
        log.iter().any(|x| x["subject"] == "batch-1"
            && x["detail"]["op"] == "preempted"
            && x["detail"]["priority"] == 5
            && x["detail"]["by_priority"] == 800),
        "no preemption entry with the policies' priorities"
    );
}
