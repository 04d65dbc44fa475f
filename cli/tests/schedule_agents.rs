//! Scheduling with real agents (root: agents need cgroups): each agent reports its capacity
//! and labels in its `Hello` and `tribune host ls` shows them; an enclave created without a
//! host is placed on one with room and runs there; `tribune host drain` moves a process
//! enclave by stop-and-restart, and afterwards it runs on exactly one host, under the epoch the
//! log records, with the source stopped before the target started; an agent's session keeps
//! its host's record fresh (`Command::HostSeen`) with the load its enclaves measured.

mod common;

use std::time::{Duration, Instant};

use common::{Cluster, DEADLINE};
use serde_json::{Value, json};

/// Processes whose command line holds `marker`, with the agent instance whose cgroup holds
/// each.
fn running(marker: &str, instances: &[&str]) -> Vec<(u32, Option<String>)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let owner = instances
            .iter()
            .find(|i| cgroup.contains(&format!("tribune/{i}/")))
            .map(|i| i.to_string());
        out.push((pid, owner));
    }
    out
}

async fn wait_for<T>(what: &str, c: &Cluster, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_report_capacity_and_a_drain_moves_a_process_enclave_to_exactly_one_host() {
    if common::skip_unless_root(
        "agents_report_capacity_and_a_drain_moves_a_process_enclave_to_exactly_one_host",
        "the host agent needs cgroups",
    ) {
        return;
    }
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    let n = c.wait_leader().await;
    let controllers: Vec<String> = c.nodes.values().map(|x| x.addr.clone()).collect();
    let agent = |instance: &str, host: &str, cores: u64| {
        common::start_agent(
            &c,
            instance,
            host,
            controllers.clone(),
            vec![
                "--capacity".into(),
                format!(
                    "cpu_millicores={},memory_bytes={}",
                    cores * 1000,
                    4u64 << 30
                ),
                "--labels".into(),
                "pool=sched".into(),
            ],
        )
    };
    let a1 = agent("scha", "sh1", 2);
    let a2 = agent("schb", "sh2", 1);

    // Their Hello's capacity and labels reach the host records.
    let hosts = wait_for("both hosts with their capacity", &c, async || {
        let (_, v) = c.get_json(n, "/v1/hosts").await?;
        let hs = v.as_array()?.clone();
        let ok = ["sh1", "sh2"].iter().all(|id| {
            hs.iter().any(|h| {
                h["id"] == *id
                    && h["capacity"]["cpu_millicores"].as_u64().unwrap_or(0) > 0
                    && h["labels"]["pool"] == "sched"
            })
        });
        ok.then_some(hs)
    })
    .await;
    let cpu = |id: &str| {
        hosts
            .iter()
            .find(|h| h["id"] == id)
            .and_then(|h| h["capacity"]["cpu_millicores"].as_u64())
    };
    assert_eq!((cpu("sh1"), cpu("sh2")), (Some(2000), Some(1000)));
    let out = c.cli(&["host", "ls", "-o", "wide"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("pool") && text.contains("4Gi"), "{text}");

    // 1.5 cores: only sh1 has room. It runs there.
    let marker = "sched-drain-marker";
    let script = format!("while :; do sleep 1; done # {marker}");
    // The program after `--`, so the cluster's own arguments go before it.
    let out = std::process::Command::new(common::BIN)
        .args([
            "enclave",
            "create",
            "--id",
            "mover",
            "--tenant",
            "acme",
            "--cpu",
            "1500m",
            "--host-selector",
            "pool=sched",
            "-o",
            "json",
            "--endpoint",
            &c.endpoints(),
        ])
        .args(c.tls_args())
        .args(["--", "/bin/sh", "-c", &script])
        .output()
        .expect("run tribune");
    assert!(out.status.success(), "{}", common::output_text(&out));
    let e: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(e["placement"], json!({"host": "sh1", "epoch": 1}), "{e}");
    let instances = [a1.instance.as_str(), a2.instance.as_str()];
    wait_for("the enclave running on sh1", &c, async || {
        let (_, e) = c.get_json(n, "/v1/enclaves/mover").await?;
        let procs = running(marker, &instances);
        (e["state"] == "running" && procs.len() == 1 && procs[0].1.as_deref() == Some(instances[0]))
            .then_some(())
    })
    .await;

    // sh2 has 1 core: a drain of sh1 leaves it (nowhere to go) and says why.
    let out = c.cli(&["host", "drain", "sh1"]);
    assert_eq!(out.status.code(), Some(1), "{}", common::output_text(&out));
    assert!(
        common::output_text(&out).contains("mover: stays: enclave mover fits nowhere"),
        "{}",
        common::output_text(&out)
    );
    // A third host with room; drain again: it moves.
    let a3 = agent("schc", "sh3", 2);
    wait_for("sh3's capacity", &c, async || {
        let (_, v) = c.get_json(n, "/v1/hosts").await?;
        v.as_array()?
            .iter()
            .any(|h| h["id"] == "sh3" && h["capacity"]["cpu_millicores"] == 2000)
            .then_some(())
    })
    .await;
    let out = c.cli(&["host", "drain", "sh1"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("mover: moving to sh3") && text.contains("epoch 2"),
        "{text}"
    );
    let instances = [
        a1.instance.as_str(),
        a2.instance.as_str(),
        a3.instance.as_str(),
    ];
    // While it moves, it never runs in two places; at the end it runs on sh3 alone.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let procs = running(marker, &instances);
        assert!(procs.len() <= 1, "running twice: {procs:?}\n{}", c.logs());
        let (_, e) = c.get_json(n, "/v1/enclaves/mover").await.expect("get");
        if e["placement"] == json!({"host": "sh3", "epoch": 2})
            && e["state"] == "running"
            && procs.len() == 1
            && procs[0].1.as_deref() == Some(instances[2])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not moved: {e} {procs:?}\n{}\n{}",
            a1.log_tail(),
            a3.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The log: the move started on sh1 under epoch 1, finished on sh3 under epoch 2 once sh1's
    // agent acked the plan without it; the new verdict comes from sh3.
    let log = c.log_entries(n).await.expect("log");
    let pos = |f: &dyn Fn(&Value) -> bool| log.iter().position(f);
    let start = pos(&|x| {
        x["subject"] == "mover"
            && x["detail"]["op"] == "move_start"
            && x["detail"]["from"] == "sh1"
            && x["detail"]["to"] == "sh3"
            && x["detail"]["epoch"] == 1
            && x["detail"]["cause"] == "drain"
    })
    .expect("move_start entry");
    let done = pos(&|x| {
        x["subject"] == "mover"
            && x["detail"]["op"] == "move_done"
            && x["detail"]["to"] == "sh3"
            && x["detail"]["epoch"] == 2
    })
    .expect("move_done entry");
    assert!(start < done);
    assert!(
        log[done + 1..].iter().any(|x| x["kind"] == "verdict"
            && x["subject"] == "mover"
            && x["detail"]["host"] == "sh3"
            && x["detail"]["trusted"] == true),
        "no trusted verdict from sh3 after the move"
    );
    assert!(log.iter().any(|x| x["kind"] == "host_change"
        && x["subject"] == "sh1"
        && x["detail"]["op"] == "drain"));
    drop((a1, a2, a3));
}

/// A host that runs nothing relays no evidence, so only its agent's stream vouches for it: the
/// session records the host as seen ten times per `[migration] attest_max_age_s` (here 2 s:
/// every second), and the record stays fresher than that window for as long as the agent is
/// connected — an idle host remains a valid migration target. With each sighting goes the
/// host's measured load: what its enclaves' verified usage adds up to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_session_keeps_its_host_fresh_and_records_its_measured_load() {
    let test = "an_agents_session_keeps_its_host_fresh_and_records_its_measured_load";
    if common::skip_unless_root(test, "the host agent needs cgroups") {
        return;
    }
    let conf = tempfile::tempdir().expect("temp dir");
    let config = conf.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[migration]\nattest_max_age_s = 2\n{}",
            common::migration_ports()
        ),
    )
    .expect("write the controller config");
    let config = config.display().to_string();
    let c = Cluster::start_tls(1, &["--allow-sim-evidence", "--config", &config]);
    let n = c.wait_leader().await;
    let controllers: Vec<String> = c.nodes.values().map(|x| x.addr.clone()).collect();
    let _agent = common::start_agent(&c, "seen", "seen1", controllers, Vec::new());
    let seen = |after: i64| {
        let c = &c;
        async move || -> Option<i64> {
            let (_, hs) = c.get_json(n, "/v1/hosts").await?;
            let h = hs.as_array()?.iter().find(|h| h["id"] == "seen1")?;
            h["last_heartbeat_ms"].as_i64().filter(|&t| t > after)
        }
    };
    let first = wait_for("the host's record", &c, seen(0)).await;
    // Past the 2 s window after the connect, the record is still within it.
    let later = wait_for(
        "the host seen 3 s after it connected",
        &c,
        seen(first + 3_000),
    )
    .await;
    // And again: recorded while the agent stays connected, not once.
    wait_for("the host seen once more", &c, seen(later)).await;

    // A busy enclave there: its verified usage becomes the host's measured load, which the
    // scheduler scores with and `tribune host ls -o wide` shows.
    c.put_process_enclave(
        n,
        "spin",
        "seen1",
        &["/bin/sh", "-c", "while :; do :; done"],
    )
    .await;
    let used = wait_for("the host's measured load", &c, async || {
        let (_, hs) = c.get_json(n, "/v1/hosts").await?;
        let h = hs.as_array()?.iter().find(|h| h["id"] == "seen1")?;
        h["measured_load"]["cpu_millicores"]
            .as_u64()
            .filter(|&m| m >= 300)
    })
    .await;
    eprintln!("figure: a spinning enclave's host measured {used} millicores used");
    let out = c.cli(&["host", "ls", "-o", "wide"]);
    let text = common::output_text(&out);
    assert!(out.status.success() && text.contains("CPU USED"), "{text}");
}

/// An enclave its policy gives `priority 900 preempt` (its spec asks nothing) displaces a
/// lower-priority process enclave on a full host; the displaced one is moved by
/// stop-and-restart to the host that has room — never running in two places — and the log
/// has both entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preempted_process_enclave_is_moved_to_a_host_with_room() {
    let test = "a_preempted_process_enclave_is_moved_to_a_host_with_room";
    if common::skip_unless_root(test, "the host agent needs cgroups") {
        return;
    }
    let c = Cluster::start_tls(1, &["--allow-sim-evidence"]);
    let n = c.wait_leader().await;
    let controllers: Vec<String> = c.nodes.values().map(|x| x.addr.clone()).collect();
    let agent = |instance: &str, host: &str| {
        common::start_agent(
            &c,
            instance,
            host,
            controllers.clone(),
            vec![
                "--capacity".into(),
                format!("cpu_millicores=2000,memory_bytes={}", 4u64 << 30),
                "--labels".into(),
                "pool=pre".into(),
            ],
        )
    };
    let (a1, a2) = (agent("prea", "pa"), agent("preb", "pb"));
    wait_for("both hosts with their capacity", &c, async || {
        let (_, v) = c.get_json(n, "/v1/hosts").await?;
        let hs = v.as_array()?;
        ["pa", "pb"]
            .iter()
            .all(|id| {
                hs.iter()
                    .any(|h| h["id"] == *id && h["capacity"]["cpu_millicores"] == 2000)
            })
            .then_some(())
    })
    .await;
    let (s, b) = c
        .put_policy(
            n,
            "vip",
            "policy \"vip\" {\n  match labels.tier == \"vip\"\n  priority 900 preempt\n}\n",
            None,
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let process = |marker: &str| json!({"process": {"cmd": ["/bin/sh", "-c", format!("while :; do sleep 1; done # {marker}")]}});
    // pa: `low` (1.5 cores, priority 10). pb: `keep` (0.4 cores, priority 950: not displaceable).
    for (id, host, cpu, priority) in [("low", "pa", 1500, 10), ("keep", "pb", 400, 950)] {
        c.put_json(
            n,
            &format!("/v1/enclaves/{id}"),
            json!({"id": id, "tenant": "acme", "tee": "sim", "priority": priority,
                   "requested": {"cpu_millicores": cpu},
                   "placement": {"host": host, "epoch": 1},
                   "launch": process(&format!("pre-{id}-marker"))}),
        )
        .await;
    }
    let instances = [a1.instance.as_str(), a2.instance.as_str()];
    wait_for("low running on pa", &c, async || {
        let procs = running("pre-low-marker", &instances);
        (procs.len() == 1 && procs[0].1.as_deref() == Some(instances[0])).then_some(())
    })
    .await;

    // Two cores fit nowhere (pa has 0.5 free, pb 1.6): `low` makes room, and pb takes it.
    let (s, e) = {
        let r = c
            .http
            .post(c.url(n, "/v1/enclaves"))
            .json(&json!({"id": "vip", "tenant": "acme", "tee": "sim",
                          "labels": {"tier": "vip"},
                          "requested": {"cpu_millicores": 2000},
                          "scheduling": {"host_selector": {"pool": "pre"}},
                          "launch": process("pre-vip-marker")}))
            .send()
            .await
            .expect("POST");
        let s = r.status().as_u16();
        (s, r.json::<Value>().await.unwrap_or_default())
    };
    assert_eq!(s, 201, "{e}");
    assert_eq!(e["placement"], json!({"host": "pa", "epoch": 1}), "{e}");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let procs = running("pre-low-marker", &instances);
        assert!(procs.len() <= 1, "running twice: {procs:?}\n{}", c.logs());
        let (_, l) = c.get_json(n, "/v1/enclaves/low").await.expect("low");
        let vip = running("pre-vip-marker", &instances);
        if l["placement"] == json!({"host": "pb", "epoch": 2})
            && procs.len() == 1
            && procs[0].1.as_deref() == Some(instances[1])
            && vip.len() == 1
            && vip[0].1.as_deref() == Some(instances[0])
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not moved: {l} {procs:?} {vip:?}\n{}\n{}",
            a1.log_tail(),
            a2.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = c.log_entries(n).await.expect("log");
    assert!(
        log.iter().any(|x| x["subject"] == "vip"
            && x["detail"]["op"] == "place"
            && x["detail"]["priority"] == 900
            && x["detail"]["displaced"] == json!(["low"])),
        "{log:?}"
    );
    assert!(
        log.iter().any(|x| x["subject"] == "low"
            && x["detail"]["op"] == "preempted"
            && x["detail"]["to"] == "pb"
            && x["detail"]["by"] == "vip"
            && x["detail"]["priority"] == 10
            && x["detail"]["by_priority"] == 900),
        "{log:?}"
    );
    assert!(
        log.iter().any(|x| x["subject"] == "low"
            && x["detail"]["op"] == "move_done"
            && x["detail"]["to"] == "pb"),
        "{log:?}"
    );
    drop((a1, a2));
}
