//! `tribune chaos run`: the multi-process fault harness. Real controllers in network
//! namespaces (root and nftables needed: skipped loudly otherwise).
//!
//! - the bounded sweep: every scenario once, a few seconds of faults each, no anomaly;
//! - the checker catches a real bug: with the test-only fault `stale-reads` (compiled into the
//!   binary `cargo test` builds only, control-plane/src/test_fault.rs) a cut-off controller
//!   answers reads from its own state, and the linearizability checker must say so; the same
//!   seeds without the fault must pass;
//! - the enforcement checker catches a real bug: with the agent's test-only fault
//!   `lift-caps-when-cut-off` (host-agent/src/test_fault.rs) an agent cut off from every
//!   controller removes its enclaves' CPU caps, and the checker must say so; the same seed
//!   without the fault must pass.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn can_run() -> bool {
    if !tribune_testkit::is_root() {
        tribune_testkit::say_skipped("the chaos harness needs root (network namespaces, nft)");
        return false;
    }
    let nft = Command::new("nft").arg("-V").output().is_ok();
    if !nft {
        tribune_testkit::say_skipped("nft is not installed (apt-get install nftables)");
        return false;
    }
    true
}

/// `tribune chaos run ARGS -o json`: the exit status and the document.
fn chaos_run(args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = Command::new(BIN)
        .args(["chaos", "run"])
        .args(args)
        .args(["-o", "json"])
        .output()
        .expect("run tribune");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON document ({e}); stderr:\n{err}"));
    (out.status.success(), doc, err)
}

fn no_leftovers() {
    let ns = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    let mut ns = String::from_utf8_lossy(&ns.stdout).into_owned();
    // The controllers' tmpfs too (first field of /proc/mounts).
    ns.push_str(&std::fs::read_to_string("/proc/self/mounts").unwrap_or_default());
    // And the agents' instances (`tribune/tch<PID>x<N>a<K>` cgroups, v1 or v2).
    for dir in ["/sys/fs/cgroup/cpu/tribune", "/sys/fs/cgroup/tribune"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            ns.push('\n');
            ns.push_str(&e.file_name().to_string_lossy());
        }
    }
    // Runs of this test binary's child are named tch<PID>x…; the child is gone, so any of its
    // names still here leaked. Names of other live harnesses may be there: only count dead ones.
    for line in ns.lines().filter(|l| l.starts_with("tch")) {
        let pid: String = line[3..].chars().take_while(char::is_ascii_digit).collect();
        assert!(
            std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "a namespace of a finished run was left behind: {line}"
        );
    }
}

#[test]
fn every_scenario_once_finds_no_anomaly_and_leaves_nothing_behind() {
    if !can_run() {
        return;
    }
    let (ok, doc, err) = chaos_run(&["--scenario", "all", "--seed", "1", "--duration", "4s"]);
    assert!(ok, "{doc:#}\n{err}");
    assert_eq!(doc["runs"], 16, "{doc:#}");
    assert_eq!(doc["anomalies"], 0, "{doc:#}");
    assert_eq!(doc["lost_writes"], 0, "{doc:#}");
    assert!(
        doc["operations_checked"].as_u64().is_some_and(|n| n > 100),
        "{doc:#}"
    );
    let faults = doc["faults"].as_object().expect("faults by kind");
    for kind in [
        "kill-9",
        "pause",
        "leader-isolated",
        "minority-isolated",
        "flapping",
    ] {
        assert!(faults.contains_key(kind), "no {kind} fault in {faults:?}");
    }
    for r in doc["reports"].as_array().expect("reports") {
        assert!(r["log"]["heads"].as_u64().is_some_and(|n| n > 0), "{r:#}");
        // Every link between controllers goes through the proxy, in every scenario.
        assert!(
            r["proxy"]["connections"].as_u64().is_some_and(|n| n > 0)
                && r["proxy"]["bytes"].as_u64().is_some_and(|n| n > 0),
            "{r:#}"
        );
        let faults = &r["faults"];
        match r["scenario"].as_str() {
            // The proxy really held bytes back (a delay, a stall or a late delivery).
            Some("slow-net") => assert!(
                r["proxy"]["chunks_delayed"].as_u64().is_some_and(|n| n > 0)
                    && r["proxy"]["held_ms_max"].as_u64().is_some_and(|n| n >= 10),
                "{r:#}"
            ),
            // A tear was written, and the controller cut it on restart (tears_not_cut empty:
            // its log says so for every tear).
            Some("torn-write") => {
                assert!(
                    faults["torn-write"].as_u64().is_some_and(|n| n > 0),
                    "{r:#}"
                );
                assert_eq!(
                    r["tears_not_cut"].as_array().map(Vec::len),
                    Some(0),
                    "{r:#}"
                );
            }
            // cargo test builds the clock hook in: the jump really happened (the jumped
            // controller signed a tree head with its clock offset by the jump).
            Some("clock-jump") => assert!(
                faults["clock-jump-observed"]
                    .as_u64()
                    .is_some_and(|n| n > 0),
                "{r:#}"
            ),
            // Host agents ran, the kernel's enforcement was read all along, an agent fault was
            // injected, and the usage chains were read from the log.
            Some("agents") => {
                let e = &r["enforcement"];
                assert!(e["readings"].as_u64().is_some_and(|n| n > 100), "{r:#}");
                assert!(
                    ["agent-cut-off", "agent-cut-from-some", "agent-kill-9"]
                        .iter()
                        .any(|k| faults[*k].as_u64().is_some_and(|n| n > 0)),
                    "{r:#}"
                );
                let c = &r["usage_chains"];
                assert_eq!(c["read"], true, "{r:#}");
                assert!(c["digests"].as_u64().is_some_and(|n| n > 0), "{r:#}");
            }
            // A voter was removed through the API (and the run recovered: every controller a
            // voter again, or `recovered` would be false and the run an anomaly).
            Some("membership") => {
                assert!(
                    faults["member-removed"].as_u64().is_some_and(|n| n > 0),
                    "{r:#}"
                )
            }
            _ => {}
        }
    }
    no_leftovers();
}

#[test]
fn the_linearizability_checker_catches_stale_reads_and_passes_the_same_seeds_without() {
    if !can_run() {
        return;
    }
    // cargo test builds tribune with the test-faults feature (cli's dev-dependency).
    const { assert!(tribune_controller::test_fault::COMPILED_IN) };
    let seeds = ["--seed", "7", "--seeds", "2", "--duration", "8s"];
    let mut args = vec!["--scenario", "minority", "--test-fault", "stale-reads"];
    args.extend(seeds);
    let (ok, doc, err) = chaos_run(&args);
    assert!(!ok, "the broken build must fail: {doc:#}\n{err}");
    let caught = doc["reports"]
        .as_array()
        .expect("reports")
        .iter()
        .filter(|r| {
            r["history"]["not_linearizable"]
                .as_array()
                .is_some_and(|v| !v.is_empty())
        })
        .count();
    assert!(caught > 0, "no run was found not linearizable: {doc:#}");
    // `tribune chaos check` finds the same on the recorded history, offline.
    for r in doc["reports"].as_array().expect("reports") {
        let Some(dir) = r["dir"].as_str() else {
            continue;
        };
        let out = Command::new(BIN)
            .args(["chaos", "check"])
            .arg(std::path::Path::new(dir).join("history.jsonl"))
            .output()
            .expect("run tribune");
        let text = String::from_utf8_lossy(&out.stdout);
        let h = &r["history"];
        let found = ["not_linearizable", "lost_writes", "torn_reads", "malformed"]
            .iter()
            .any(|k| h[k].as_array().is_some_and(|v| !v.is_empty()));
        assert_eq!(!out.status.success(), found, "{text}\n{r:#}");
        if h["not_linearizable"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
        {
            assert!(text.contains("not linearizable"), "{text}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    let mut args = vec!["--scenario", "minority"];
    args.extend(seeds);
    let (ok, doc, err) = chaos_run(&args);
    assert!(ok, "the same seeds without the fault: {doc:#}\n{err}");
    assert_eq!(doc["anomalies"], 0, "{doc:#}");
    no_leftovers();
}

#[test]
fn the_enforcement_checker_catches_caps_lifted_when_cut_off_and_passes_the_same_seed_without() {
    if !can_run() {
        return;
    }
    const { assert!(tribune_agent::test_fault::COMPILED_IN) };
    // Seed 6 cuts agent 1 off from every controller (agent-cut-off) in its first two agent
    // faults, each cut long enough for the link to go down (keep-alive: 1.5 s) and the broken
    // agent to lift its caps (seed 1 did until a fourth kind of agent fault changed the draws).
    // 16 s, not 8: under CI's load (the other tests of this file run at once) 8 s once fitted
    // only two faults, and the one cut then did not outlast the keep-alive by enough for the
    // lift to be seen.
    let seed = ["--scenario", "agents", "--seed", "6", "--duration", "16s"];
    let mut args = seed.to_vec();
    args.extend(["--test-fault", "lift-caps-when-cut-off"]);
    let (ok, doc, err) = chaos_run(&args);
    assert!(!ok, "the broken build must fail: {doc:#}\n{err}");
    let r = &doc["reports"][0];
    assert!(
        r["faults"]["agent-cut-off"].as_u64().is_some_and(|n| n > 0),
        "{r:#}"
    );
    let found = r["enforcement"]["anomalies"]
        .as_array()
        .expect("enforcement anomalies");
    assert!(
        found.iter().any(|a| a
            .as_str()
            .is_some_and(|a| a.contains("limits lifted while cut off"))),
        "the checker did not see the caps lifted: {r:#}"
    );
    if let Some(dir) = r["dir"].as_str() {
        let _ = std::fs::remove_dir_all(dir);
    }
    let (ok, doc, err) = chaos_run(&seed);
    assert!(ok, "the same seed without the fault: {doc:#}\n{err}");
    assert_eq!(doc["anomalies"], 0, "{doc:#}");
    no_leftovers();
}

#[test]
fn bad_scenarios_and_durations_are_refused_with_a_reason() {
    let out = Command::new(BIN)
        .args(["chaos", "run", "--scenario", "nonesuch"])
        .output()
        .expect("run tribune");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown scenario"), "{err}");
    let out = Command::new(BIN)
        .args(["chaos", "run", "--duration", "soon"])
        .output()
        .expect("run tribune");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad duration"));
}
