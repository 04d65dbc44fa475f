//! Live migration driven by the controllers (root + qemu-system-x86_64): three controllers,
//! real agents with the QEMU runtime, a small guest whose counter (in guest RAM, read over
//! QMP) tells a moved VM from a restarted one.
//!
//! - `tribune enclave migrate vm --to mh2`: the enclave runs on mh2 under epoch + 1, the
//!   counter has gone on from where it was on mh1, the log holds each step;
//! - refused with the reason: a target that does not exist, the same host, the cool-down, a
//!   host whose agent runs processes, not QEMU (its `tribune.dev/runtime` label), forced or
//!   not: nothing starts, the enclave runs on where it was, under its epoch;
//! - rolled back: a target whose evidence is not bound to the migration's nonce;
//! - a VM its policy suspended moves only when forced, and stays paused; a drain moves a VM;
//! - moved there and back (A → B → A → B): attested afresh on each host it returns to.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_agent::runtime::qemu::{MIGRATE_SOCKET, guest_counter};
use tribune_agent::runtime::qmp::Qmp;
use tribune_testkit::agent::{AgentOptions, AgentProcess};

fn have_qemu() -> bool {
    std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// An agent for `host`; with `qemu`, the QEMU runtime and an allow-list that permits VMs.
fn agent(c: &Cluster, instance: &str, host: &str, qemu: bool) -> (AgentProcess, PathBuf) {
    agent_with(c, instance, host, qemu, Vec::new())
}

/// [`agent`] with more environment (a test fault).
fn agent_with(
    c: &Cluster,
    instance: &str,
    host: &str,
    qemu: bool,
    env: Vec<(String, String)>,
) -> (AgentProcess, PathBuf) {
    let dir = c.dir.path();
    let tls_dir = c.tls_dir.clone().expect("a TLS cluster");
    common::issue(
        &tls_dir,
        &tribune_tls::PeerIdentity::Agent {
            host: host.to_string(),
        },
    );
    let mut list = tribune_agent::AllowList::default();
    list.allow_program("/bin/sh", None).expect("allow /bin/sh");
    if qemu {
        list.qemu = Some(Default::default());
    }
    let policy = dir.join(format!("launch-policy-{instance}.toml"));
    list.write(&policy).expect("write the allow-list");
    let data_dir = dir.join(format!("agent-{instance}"));
    let extra = if qemu {
        vec!["--runtime".to_string(), "qemu".to_string()]
    } else {
        vec![]
    };
    let p = AgentProcess::start(&AgentOptions {
        binary: BIN.into(),
        instance: instance.to_string(),
        host: host.to_string(),
        data_dir: data_dir.clone(),
        launch_policy: policy,
        controllers: c.nodes.values().map(|x| x.addr.clone()).collect(),
        tls_dir: Some(tls_dir),
        extra,
        env,
        log: dir.join(format!("agent-{instance}.log")),
        netns: None,
    })
    .expect("spawn agent");
    (p, data_dir)
}

/// The guest's counter, through the VM's migration monitor on the agent's data dir.
async fn counter(data_dir: &Path) -> Option<u64> {
    let sock = data_dir.join("enclaves").join("vm").join(MIGRATE_SOCKET);
    let mut q = Qmp::connect(&sock, Duration::from_secs(5)).await.ok()?;
    guest_counter(&mut q).await.ok()
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

fn placement(e: &Value) -> (String, u64) {
    (
        e["placement"]["host"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        e["placement"]["epoch"].as_u64().unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_live_migrate_a_vm_and_refuse_a_host_that_cannot_run_it() {
    let test = "the_controllers_live_migrate_a_vm_and_refuse_a_host_that_cannot_run_it";
    if common::skip_unless_root(test, "the host agent needs cgroups") {
        return;
    }
    if !have_qemu() {
        tribune_testkit::say_skipped(&format!(
            "{test}: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
        ));
        return;
    }
    // Migration targets listen on ports of this test's own (the config outlives `c`).
    let conf = tempfile::tempdir().expect("temp dir");
    let config = conf.path().join("controller.toml");
    std::fs::write(
        &config,
        format!("[migration]\n{}", common::migration_ports()),
    )
    .expect("write the controller config");
    let config = config.display().to_string();
    let c = Cluster::start_tls(3, &["--allow-sim-evidence", "--config", &config]);
    let n = c.wait_leader().await;
    let (_a1, d1) = agent(&c, "lm1", "mh1", true);
    let (_a2, d2) = agent(&c, "lm2", "mh2", true);
    let (_a3, _d3) = agent(&c, "lm3", "mh3", false);
    wait_for("three hosts with addresses", &c, async || {
        let (_, v) = c.get_json(n, "/v1/hosts").await?;
        let hs = v.as_array()?;
        let ok = ["mh1", "mh2", "mh3"]
            .iter()
            .all(|id| hs.iter().any(|h| h["id"] == *id && h["address"] != ""));
        ok.then_some(())
    })
    .await;

    c.put_json(
        n,
        "/v1/enclaves/vm",
        json!({
            "id": "vm", "tenant": "acme", "tee": "sim",
            "requested": {"cpu_millicores": 100, "memory_bytes": 0,
                          "egress_bits_per_sec": 0, "ingress_bits_per_sec": 0, "gpu_percent": 0},
            "placement": {"host": "mh1", "epoch": 1},
            "state": "running",
            "launch": {"qemu": {"memory_mib": 64}},
        }),
    )
    .await;
    // The guest counts on mh1.
    let before = wait_for("the guest counting on mh1", &c, async || {
        counter(&d1).await.filter(|&n| n > 0)
    })
    .await;

    // Refused, with the reason, nothing started.
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "nope"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("nope"), "names the missing host: {text}");
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "mh1"]);
    let text = common::output_text(&out);
    assert!(
        !out.status.success() && text.contains("already runs"),
        "{text}"
    );

    // Migrated: runs on mh2 under epoch 2, and the counter went on.
    let started = Instant::now();
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "mh2"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}\n{}", c.logs());
    assert!(text.contains("committed"), "{text}");
    eprintln!(
        "figure: tribune enclave migrate (64 MiB TCG guest, 3 controllers): {} ms end to end\n{text}",
        started.elapsed().as_millis()
    );
    let (_, e) = c.get_json(n, "/v1/enclaves/vm").await.expect("enclave");
    assert_eq!(placement(&e), ("mh2".to_string(), 2), "{e}");
    let moved = wait_for("the guest counting on mh2", &c, async || {
        counter(&d2).await.filter(|&n| n > before)
    })
    .await;
    let later = wait_for("the guest still counting on mh2", &c, async || {
        counter(&d2).await.filter(|&n| n > moved)
    })
    .await;
    eprintln!("figure: guest counter {before} on mh1 before, {moved} then {later} on mh2 after");
    // Gone from the source.
    wait_for("the VM gone from mh1", &c, async || {
        counter(&d1).await.is_none().then_some(())
    })
    .await;
    let (_, list) = c.get_json(n, "/v1/migrations").await.expect("migrations");
    let done = &list["past"][0];
    assert_eq!(done["phase"], "committed", "{list}");
    // The target's evidence, bound to the migration's fresh nonce, was verified before the
    // source sent anything.
    assert!(
        done["target_measurement"]
            .as_str()
            .is_some_and(|m| m.len() == 96),
        "{list}"
    );
    assert!(
        done["progress"]["transferred_bytes"].as_u64().unwrap_or(0) > 0,
        "{list}"
    );
    let entries = c.log_entries(n).await.expect("log");
    let ops: Vec<&str> = entries
        .iter()
        .filter(|e| e["subject"] == "vm" && e["kind"] == "migration")
        .filter_map(|e| e["detail"]["op"].as_str())
        .collect();
    assert_eq!(
        ops,
        ["live_start", "live_ready", "live_committed"],
        "{entries:?}"
    );

    // Within the cool-down: refused unless forced.
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "mh3"]);
    let text = common::output_text(&out);
    assert!(
        !out.status.success() && text.contains("cool-down"),
        "{text}"
    );
    // mh3's agent runs processes, not QEMU (its `tribune.dev/runtime` label): refused before
    // anything starts, forced or not; it runs on mh2 under epoch 2.
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "mh3", "--force"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("tribune.dev/runtime") && text.contains("mh3"),
        "names the runtime mh3 lacks: {text}"
    );
    let (_, e) = c.get_json(n, "/v1/enclaves/vm").await.expect("enclave");
    assert_eq!(placement(&e), ("mh2".to_string(), 2), "{e}");
    let c0 = counter(&d2).await.expect("still on mh2");
    wait_for(
        "the guest counting on mh2 after the refusal",
        &c,
        async || counter(&d2).await.filter(|&n| n > c0),
    )
    .await;
    let entries = c.log_entries(n).await.expect("log");
    let starts = entries
        .iter()
        .filter(|e| e["subject"] == "vm" && e["detail"]["op"] == "live_start")
        .count();
    assert_eq!(starts, 1, "nothing started for mh3: {entries:?}");
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Waits until the VM holds a trusted verdict from `host` given at or after `since_ms`, and
/// its usage reports from the key that verdict bound count (its confirmed chain has moved on
/// under it): the attestation stream goes on from `host`.
async fn attested_on(c: &Cluster, n: u64, host: &str, since_ms: i64) {
    wait_for(
        &format!("the VM attested on {host}, its usage counted"),
        c,
        async || {
            let (_, v) = c.get_json(n, "/v1/enclaves/vm/status").await?;
            let s = &v["status"];
            let a = &s["attestation"];
            let ok = a["trusted"] == true
                && a["host"] == host
                && a["verified_at_ms"].as_i64().unwrap_or(0) >= since_ms
                && s["confirmed"]["key"] == a["ed25519_pub"]
                && s["confirmed"]["last_seq"].as_u64().unwrap_or(0) >= 2;
            ok.then_some(())
        },
    )
    .await;
}

/// A TLS cluster of three controllers (simulated evidence allowed), an agent with the QEMU
/// runtime on each of `hosts` (the second with `env`), and a counting 32 MiB VM `vm` placed on
/// the first under epoch 1, attested there.
struct TwoHosts {
    c: Cluster,
    n: u64,
    agents: (AgentProcess, AgentProcess),
    /// The two agents' data dirs.
    dirs: (PathBuf, PathBuf),
    /// The guest's counter once seen counting on the first host.
    count: u64,
}

/// [`TwoHosts`] on `hosts`, or `None` (said loudly) where `test` cannot run here.
async fn a_vm_on_the_first_of(
    test: &str,
    hosts: [&str; 2],
    env: Vec<(String, String)>,
) -> Option<TwoHosts> {
    if common::skip_unless_root(test, "the host agent needs cgroups") {
        return None;
    }
    if !have_qemu() {
        tribune_testkit::say_skipped(&format!(
            "{test}: qemu-system-x86_64 not installed (apt-get install qemu-system-x86)"
        ));
        return None;
    }
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let n = c.wait_leader().await;
    let (a1, d1) = agent(&c, &format!("{}a", hosts[0]), hosts[0], true);
    let (a2, d2) = agent_with(&c, &format!("{}a", hosts[1]), hosts[1], true, env);
    wait_for("two hosts with addresses", &c, async || {
        let (_, v) = c.get_json(n, "/v1/hosts").await?;
        let hs = v.as_array()?;
        let ok = hosts
            .iter()
            .all(|id| hs.iter().any(|h| h["id"] == *id && h["address"] != ""));
        ok.then_some(())
    })
    .await;
    c.put_json(
        n,
        "/v1/enclaves/vm",
        json!({
            "id": "vm", "tenant": "acme", "tee": "sim",
            "requested": {"cpu_millicores": 100, "memory_bytes": 0,
                          "egress_bits_per_sec": 0, "ingress_bits_per_sec": 0, "gpu_percent": 0},
            "placement": {"host": hosts[0], "epoch": 1},
            "state": "running",
            "launch": {"qemu": {"memory_mib": 32}},
        }),
    )
    .await;
    attested_on(&c, n, hosts[0], 0).await;
    let count = wait_for(
        &format!("the guest counting on {}", hosts[0]),
        &c,
        async || counter(&d1).await.filter(|&n| n > 0),
    )
    .await;
    Some(TwoHosts {
        c,
        n,
        agents: (a1, a2),
        dirs: (d1, d2),
        count,
    })
}

/// A VM moved A → B → A: on its return to a host it had left it is attested there again and
/// its usage counts. Before the fix in `attest/session/migrate.rs` (found by `tribune bench
/// migrate`'s breach phase) the target's stream still tracked it from its first stay, under
/// keys its agent had dropped: its reports were refused (`checkpoint mismatch`, then `no
/// trusted evidence`) and no policy decision ever saw it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_migrated_back_and_forth_is_attested_again_on_each_return() {
    let test = "a_vm_migrated_back_and_forth_is_attested_again_on_each_return";
    let Some(TwoHosts {
        c,
        n,
        agents: _agents,
        dirs: (d1, d2),
        mut count,
    }) = a_vm_on_the_first_of(test, ["mh1", "mh2"], Vec::new()).await
    else {
        return;
    };

    // There (mh2), back (mh1), and there again: each stay is attested afresh.
    let trips = [("mh2", &d2, &d1), ("mh1", &d1, &d2), ("mh2", &d2, &d1)];
    for (i, (to, on, left)) in trips.into_iter().enumerate() {
        let since = wall_ms();
        // Within the cool-down after the first: forced (audited).
        let mut args = vec!["enclave", "migrate", "vm", "--to", to];
        if i > 0 {
            args.push("--force");
        }
        let out = c.cli(&args);
        let text = common::output_text(&out);
        assert!(
            out.status.success(),
            "trip {i} to {to}: {text}\n{}",
            c.logs()
        );
        assert!(text.contains("committed"), "trip {i} to {to}: {text}");
        let (_, e) = c.get_json(n, "/v1/enclaves/vm").await.expect("enclave");
        assert_eq!(placement(&e), (to.to_string(), i as u64 + 2), "{e}");
        attested_on(&c, n, to, since).await;
        count = wait_for(&format!("the guest counting on {to}"), &c, async || {
            counter(on).await.filter(|&n| n > count)
        })
        .await;
        wait_for(
            &format!("the VM gone from the host it left ({i})"),
            &c,
            async || counter(left).await.is_none().then_some(()),
        )
        .await;
        eprintln!("trip {i}: on {to}, attested there again, counter {count}");
    }
}

/// A target whose `ready` evidence is not bound to the migration's fresh nonce (the test fault
/// replays what its waiting VM sent when it started) is refused before anything moves: the
/// migration rolls back, the log says why, and the VM runs on where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_evidence_is_not_fresh_is_refused_before_anything_moves() {
    let stale = vec![(
        "TRIBUNE_TEST_FAULT".to_string(),
        "stale-move-evidence".to_string(),
    )];
    let test = "a_target_whose_evidence_is_not_fresh_is_refused_before_anything_moves";
    let Some(TwoHosts {
        c,
        n,
        agents: _agents,
        dirs: (d1, d2),
        count,
    }) = a_vm_on_the_first_of(test, ["sh1", "sh2"], stale).await
    else {
        return;
    };
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "sh2"]);
    let text = common::output_text(&out);
    assert!(!out.status.success(), "{text}\n{}", c.logs());
    assert!(text.contains("rolled back"), "{text}");
    let (_, e) = c.get_json(n, "/v1/enclaves/vm").await.expect("enclave");
    assert_eq!(placement(&e), ("sh1".to_string(), 1), "{e}");
    wait_for(
        "the guest counting on sh1 after the refusal",
        &c,
        async || counter(&d1).await.filter(|&n| n > count),
    )
    .await;
    wait_for("the target's copy torn down", &c, async || {
        counter(&d2).await.is_none().then_some(())
    })
    .await;
    let entries = c.log_entries(n).await.expect("log");
    let ops: Vec<&str> = entries
        .iter()
        .filter(|e| e["subject"] == "vm" && e["kind"] == "migration")
        .filter_map(|e| e["detail"]["op"].as_str())
        .collect();
    assert_eq!(ops, ["live_start", "live_rolled_back"], "{entries:?}");
    let why = entries
        .iter()
        .find(|e| e["detail"]["op"] == "live_rolled_back")
        .and_then(|e| e["detail"]["reason"].as_str())
        .unwrap_or_default();
    assert!(
        why.contains("sh2 failed attestation") && why.contains("fresh nonce"),
        "the log says why: {why}"
    );
}

/// A VM its policy suspended moves only when forced — the request is refused with why, a
/// forced one is audited — and the policy's suspension moves with it: it stays paused on the
/// target. A move never lifts a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vm_suspended_by_its_policy_moves_only_when_forced_and_stays_suspended() {
    let test = "a_vm_suspended_by_its_policy_moves_only_when_forced_and_stays_suspended";
    let Some(TwoHosts {
        c,
        n,
        agents: _agents,
        dirs: (_d1, d2),
        ..
    }) = a_vm_on_the_first_of(test, ["ph1", "ph2"], Vec::new()).await
    else {
        return;
    };
    // The guest's loop keeps a TCG vCPU busy: far over a quarter core, suspended at once.
    let (s, b) = c
        .put_policy(
            n,
            "hold",
            "policy \"hold\" {\n  match tenant == \"acme\"\n  limit { cpu = 250m }\n  on over_limit { suspend now }\n}\n",
            None,
        )
        .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let suspended = async || {
        let (_, v) = c.get_json(n, "/v1/enclaves/vm").await?;
        (v["state"] == "suspended").then_some(v)
    };
    wait_for("the VM suspended by its policy", &c, suspended).await;

    let out = c.cli(&["enclave", "migrate", "vm", "--to", "ph2"]);
    let text = common::output_text(&out);
    assert!(
        !out.status.success() && text.contains("suspended by policy"),
        "{text}"
    );
    let since = wall_ms();
    let out = c.cli(&["enclave", "migrate", "vm", "--to", "ph2", "--force"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}\n{}", c.logs());
    assert!(text.contains("committed"), "{text}");
    let e = wait_for("the VM suspended on ph2", &c, suspended).await;
    assert_eq!(placement(&e), ("ph2".to_string(), 2), "{e}");
    // Attested there, its usage counted (so ph2's agent runs it under its new plan) — and
    // paused: its counter stands still while its reports go on.
    attested_on(&c, n, "ph2", since).await;
    let seq = async || {
        let (_, v) = c.get_json(n, "/v1/enclaves/vm/status").await?;
        v["status"]["confirmed"]["last_seq"].as_u64()
    };
    let first = wait_for("a confirmed report", &c, seq).await;
    let before = counter(&d2).await.expect("the VM on ph2");
    wait_for("four more reports", &c, async || {
        seq().await.filter(|&s| s >= first + 4)
    })
    .await;
    assert_eq!(counter(&d2).await, Some(before), "the guest ran on ph2");
    let sock = d2.join("enclaves").join("vm").join(MIGRATE_SOCKET);
    let mut q = Qmp::connect(&sock, Duration::from_secs(5))
        .await
        .expect("the VM's monitor on ph2");
    let status = q.query_status().await.expect("query-status");
    assert!(!status.running, "running on ph2: {}", status.status);
    let entries = c.log_entries(n).await.expect("log");
    let forced = entries.iter().any(|e| {
        e["subject"] == "vm" && e["detail"]["op"] == "live_start" && e["detail"]["forced"] == true
    });
    assert!(forced, "the override is audited: {entries:?}");
}

/// `tribune host drain` of a host with a VM on it live-migrates the VM (a restart would lose
/// its memory): it goes on counting on the other host under the next epoch, gone from the
/// drained one, and the log's `live_start` says the drain caused it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_host_live_migrates_its_vm() {
    let test = "draining_a_host_live_migrates_its_vm";
    let Some(TwoHosts {
        c,
        n,
        agents: _agents,
        dirs: (d1, d2),
        count,
    }) = a_vm_on_the_first_of(test, ["dr1", "dr2"], Vec::new()).await
    else {
        return;
    };
    let out = c.cli(&["host", "drain", "dr1"]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "{text}\n{}", c.logs());
    assert!(text.contains("migrating"), "the drain's answer: {text}");
    let e = wait_for("the VM placed on dr2", &c, async || {
        let (_, v) = c.get_json(n, "/v1/enclaves/vm").await?;
        (placement(&v) == ("dr2".to_string(), 2)).then_some(v)
    })
    .await;
    assert_ne!(e["state"], "stopped", "{e}");
    wait_for("the guest counting on dr2", &c, async || {
        counter(&d2).await.filter(|&n| n > count)
    })
    .await;
    wait_for("the VM gone from dr1", &c, async || {
        counter(&d1).await.is_none().then_some(())
    })
    .await;
    let entries = c.log_entries(n).await.expect("log");
    let drained = entries.iter().any(|e| {
        e["subject"] == "vm" && e["detail"]["op"] == "live_start" && e["detail"]["cause"] == "drain"
    });
    assert!(drained, "the log names the drain: {entries:?}");
    let committed = entries
        .iter()
        .any(|e| e["subject"] == "vm" && e["detail"]["op"] == "live_committed");
    assert!(committed, "{entries:?}");
}
