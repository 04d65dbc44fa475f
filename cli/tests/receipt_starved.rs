//! A guarantee violation is provable (issue 20), end to end as root: 3 TLS controllers, a real
//! host agent, two sim-TEE enclaves pinned to one CPU, each with a 500m CPU guarantee —
//! `busy` (spins: it always wants a whole CPU) and `idle` (sleeps without waking: it wants
//! nothing).
//!
//! Then a misbehaving host is injected: a CPU hog in a cgroup of its own outside Tribune's
//! tree, with the largest CPU weight there is (v1 `cpu.shares` 262144, v2 `cpu.weight`
//! 10000), on the same CPU. `busy` still wants the CPU but gets well under its guarantee; its
//! sealed usage reports say so (`cpu_wait_ns`: runnable but not running). `tribune receipt get`
//! and `tribune receipt verify` (offline) must report its guarantee NOT met and name exactly the
//! windows where it used less than its guarantee while used + waited reached it; `idle`'s
//! receipt, over the same period on the same starved CPU, must show its guarantee met in every
//! window — it used less because it wanted less. The hog and its cgroup are removed even when
//! an assertion fails (a drop guard).

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{BIN, Cluster, DEADLINE};
use serde_json::{Value, json};
use tribune_agent::cgroup::CgroupEnforcer;

const GUARANTEE_MILLICORES: u64 = 500;

const POLICY: &str = r#"
policy "st-all" {
  match tenant == "busy" || tenant == "idle"
  guarantee { cpu = 500m }
  limit { cpu = 2 }
}
"#;

/// The misbehaving host: a spinning process in its own top-level cgroup with the largest
/// weight, pinned to `cpu`. Dropping it kills the process and removes the cgroup.
struct Hog {
    cgroups: Box<dyn CgroupEnforcer>,
    group: String,
    child: Option<Child>,
}

impl Hog {
    fn start(cpu: &str) -> Hog {
        let cgroups = tribune_agent::cgroup::detect(Path::new("/sys/fs/cgroup"))
            .expect("a cgroup layout the agent knows");
        let mut hog = Hog {
            cgroups,
            group: format!("tribune-test-hog-{}", std::process::id()),
            child: None,
        };
        hog.cgroups
            .create(&hog.group)
            .expect("create the hog's cgroup");
        // Weight 256 is v1 shares 262144 / v2 weight 10000: the most a cgroup can have.
        hog.cgroups.set_weight(&hog.group, 256).expect("hog weight");
        hog.cgroups.set_cpuset(&hog.group, cpu).expect("hog cpuset");
        let child = Command::new("/bin/sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn the hog");
        let pid = child.id();
        hog.child = Some(child);
        hog.cgroups
            .add_pid(&hog.group, pid)
            .expect("move the hog into its cgroup");
        hog
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Err(e) = self.cgroups.remove(&self.group) {
            eprintln!("the hog's cgroup {} was not removed: {e}", self.group);
        }
    }
}

/// `(index, used, waited)` of an enclave's usage digests in a list of log entries.
fn digests(entries: &[Value], enclave: &str) -> Vec<(u64, u64, Option<u64>)> {
    entries
        .iter()
        .filter(|e| e["subject"] == enclave && e["kind"] == "usage_digest")
        .map(|e| {
            let d = &e["detail"];
            (
                e["index"].as_u64().unwrap_or(0),
                d["cpu_millicores_avg"].as_u64().unwrap_or(0),
                d["cpu_wait_millicores_avg"].as_u64(),
            )
        })
        .collect()
}

/// Asked for its guarantee and did not get it (the rule, stated independently of
/// `tribune_receipt::guarantee`).
fn starved(used: u64, waited: Option<u64>) -> bool {
    used < GUARANTEE_MILLICORES && waited.is_some_and(|w| used + w >= GUARANTEE_MILLICORES)
}

/// `tribune receipt get ENCLAVE` then `tribune receipt verify` (offline) in words and in JSON:
/// the receipt's entries, the words, the JSON verdict.
fn receipt(c: &Cluster, dir: &Path, enclave: &str, keys: &Path) -> (Vec<Value>, String, Value) {
    let file = dir.join(format!("{enclave}.receipt.json"));
    let path = file.to_str().expect("path");
    let o = c.cli(&["receipt", "get", enclave, "--from", "10m", "-f", path]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    let verify = |format: &str| {
        Command::new(BIN)
            .args(["receipt", "verify", path, "--trusted-keys"])
            .arg(keys)
            .args(["-o", format])
            .output()
            .expect("run tribune")
    };
    let words = verify("table");
    assert!(words.status.success(), "{}", common::output_text(&words));
    let as_json = verify("json");
    assert!(
        as_json.status.success(),
        "{}",
        common::output_text(&as_json)
    );
    let v: Value = serde_json::from_slice(&as_json.stdout).expect("verdict JSON");
    let r: Value = serde_json::from_slice(&std::fs::read(&file).expect("receipt")).expect("json");
    let entries = r["body"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|p| p["entry"].clone())
        .collect();
    (entries, common::output_text(&words), v["verdict"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_guarantee_is_named_in_the_receipt() {
    if common::skip_unless_root(
        "a_starved_guarantee_is_named_in_the_receipt",
        "the host agent and the injected hog need cgroups",
    ) {
        return;
    }
    if std::fs::read_to_string("/proc/self/schedstat").is_err() {
        tribune_testkit::say_skipped(
            "a_starved_guarantee_is_named_in_the_receipt: this kernel has no /proc/PID/schedstat (CONFIG_SCHED_INFO), so no demand signal",
        );
        return;
    }
    // The last CPU: the enclaves and the hog share it; the harness keeps the others.
    let cpu = (std::thread::available_parallelism().map_or(1, |n| n.get()) - 1).to_string();
    let c = Cluster::start_tls(3, &["--allow-sim-evidence"]);
    let leader = c.wait_leader().await;
    let (s, b) = c.put_policy(leader, "st-all", POLICY, None).await;
    assert!(s == 200 || s == 201, "{s} {b}");
    for (id, cmd) in [
        ("busy", "while :; do :; done"),
        // Wants nothing: no wake-ups (a loop of `sleep 1` would wake each second and queue
        // behind the hog — runnable and not served, which is demand too).
        ("idle", "exec sleep 1000000"),
    ] {
        c.put_process_enclave(leader, id, "h1", &["/bin/sh", "-c", cmd])
            .await;
    }
    let dir = c.dir.path().to_path_buf();
    let controllers = c.nodes.values().map(|n| n.addr.clone()).collect();
    let _agent = common::start_agent(
        &c,
        "starve",
        "h1",
        controllers,
        vec!["--cpuset".into(), cpu.clone()],
    );

    // Before the hog: both enclaves report their demand (usage report v2), and busy gets its
    // guarantee (it has the CPU to itself, bar idle's wake-ups).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = c.log_entries(leader).await.unwrap_or_default();
        let busy = digests(&all, "busy");
        let idle = digests(&all, "idle");
        let served = busy
            .iter()
            .filter(|(_, used, w)| *used >= GUARANTEE_MILLICORES && w.is_some())
            .count();
        if served >= 2 && idle.iter().filter(|d| d.2.is_some()).count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "busy was never served its guarantee with a demand signal: {busy:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The misbehaving host: busy wants the CPU and does not get it.
    let hog = Hog::start(&cpu);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let all = c.log_entries(leader).await.unwrap_or_default();
        let busy = digests(&all, "busy");
        if busy.iter().filter(|(_, u, w)| starved(*u, *w)).count() >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "busy was not starved under the hog: {busy:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(hog);

    let keys = dir.join("keys.json");
    let o = c.cli(&["log", "keys", "-o", "json"]);
    assert!(o.status.success(), "{}", common::output_text(&o));
    std::fs::write(&keys, &o.stdout).expect("write keys");

    // Busy: the guarantee NOT met, in exactly the windows where it asked for it.
    let (entries, said, verdict) = receipt(&c, &dir, "busy", &keys);
    let expected: Vec<u64> = digests(&entries, "busy")
        .into_iter()
        .filter(|(_, u, w)| starved(*u, *w))
        .map(|d| d.0)
        .collect();
    assert!(expected.len() >= 3, "{said}");
    let named: Vec<u64> = verdict["starved"]
        .as_array()
        .expect("starved windows")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(named, expected, "{said}");
    assert!(
        said.contains(&format!(
            "guarantee NOT met in {} windows while it asked for it",
            expected.len()
        )),
        "{said}"
    );
    let shown = expected
        .len()
        .min(tribune_receipt::receipt::WINDOWS_NAMED_MAX);
    for index in &expected[..shown] {
        assert!(said.contains(&format!("entry {index} at ")), "{said}");
    }
    assert!(!said.contains("received its guarantee in 100.0%"), "{said}");
    // Its served windows before the hog are not among them.
    assert!(
        digests(&entries, "busy")
            .iter()
            .any(|(i, u, _)| *u >= GUARANTEE_MILLICORES && !expected.contains(i)),
        "{said}"
    );
    eprintln!("busy: {said}");

    // Idle, on the same starved CPU: used less because it wanted less — met in every window.
    let (entries, said, verdict) = receipt(&c, &dir, "idle", &keys);
    assert!(digests(&entries, "idle").len() >= 3, "{said}");
    assert!(
        said.contains("received its guarantee in 100.0% of"),
        "{said}"
    );
    assert!(!said.contains("NOT met"), "{said}");
    assert!(!said.contains("NOT MET"), "{said}");
    assert_eq!(verdict["starved"], json!([]), "{said}");
    eprintln!("idle: {said}");
}
