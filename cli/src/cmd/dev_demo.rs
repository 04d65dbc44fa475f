//! The `tribune dev` demonstration: two host agents (process runtime) and three simulated-TEE
//! enclaves whose stories play out within seconds — a well-behaved one, a greedy one that is
//! throttled and then suspended, and one whose evidence stops verifying and is suspended —
//! and, as root with QEMU installed, two more agents (QEMU runtime) and a VM on the smaller of
//! them that its policy live-migrates to the other once it keeps that host busy; with every
//! decision printed as the controllers log it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use serde_json::json;
use tribune_controller::api::log::EntriesPage;
use tribune_controller::state::{
    ActionDetail, BorrowMove, LendMove, LiveCause, LogDetail, LogEntry, MigrationDetail, Step,
    ViolationDetail,
};

pub const POLICIES: [(&str, &str); 3] = [
    (
        "demo-web",
        r#"# The well-behaved tenant: a quarter core guaranteed, one core at most.
policy "demo-web" {
  match tenant == "demo" && labels.tier == "web"
  weight 2
  guarantee { cpu = 250m  memory = 128MiB }
  limit     { cpu = 1     memory = 256MiB }
  on over_limit { throttle now; suspend after 30s }
  attest    { simulated = allowed; every 10s }
  on attestation.failed { suspend now }
}
"#,
    ),
    (
        "demo-batch",
        r#"# Batch work: 200m at most; over it, throttled at once and suspended after 5 s.
policy "demo-batch" {
  match tenant == "demo" && labels.tier == "batch"
  guarantee { cpu = 100m  memory = 64MiB }
  limit     { cpu = 200m  memory = 128MiB }
  on over_limit { throttle now; suspend after 5s }
  attest    { simulated = allowed; every 3s }
  on attestation.failed { suspend now }
}
"#,
    ),
    (
        "demo-vm",
        r#"# A VM on a host too small for it: once it keeps its host over 80 % busy for 3 s, it
# is live-migrated to a QEMU host that has room for its limit.
policy "demo-vm" {
  match tenant == "demo" && labels.tier == "vm"
  guarantee { cpu = 250m }
  limit     { cpu = 1500m }
  attest    { simulated = allowed; every 10s }
  when host.cpu.utilization > 80% for 3s { migrate now }
}
"#,
    ),
];

/// The VM story's hosts (QEMU runtime: their agents label them `tribune.dev/runtime=qemu`):
/// the VM starts on the first, which declares half a core, and moves to the second.
pub const VM_HOSTS: [&str; 2] = ["v1", "v2"];

/// What the first VM host declares: half a core, so the VM's busy guest fills it.
const SMALL_HOST: &str = "cpu_millicores=500,memory_bytes=4294967296";

/// Why the VM story cannot run here, or `None` when it can (root, for the agents to enforce
/// and run QEMU; `qemu-system-x86_64` on PATH).
pub fn vm_story_skipped(root: bool) -> Option<String> {
    if !root {
        return Some("not root (the QEMU agents need cgroups)".into());
    }
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!qemu).then(|| "qemu-system-x86_64 not installed (apt-get install qemu-system-x86)".into())
}

/// The demo's hosts, one agent each.
pub const HOSTS: [&str; 2] = ["h1", "h2"];

/// (id, host, tier, command, seconds until its evidence is tampered with)
const ENCLAVES: [(&str, &str, &str, &str, Option<u64>); 3] = [
    ("web", "h1", "web", "while :; do sleep 0.2; done", None),
    ("miner", "h1", "batch", "while :; do :; done", None),
    (
        "ledger",
        "h2",
        "batch",
        "while :; do sleep 1; done",
        Some(6),
    ),
];

/// The demo enclaves' program: a shell, allowed only with the demo's own scripts.
const DEMO_SHELL: &str = "/bin/sh";

/// Writes the demo hosts' launch allow-list to `dir/launch-policy.toml`: [`DEMO_SHELL`]
/// (hashed now) with exactly the demo scripts, and nothing else — a stored enclave running
/// anything other than the demo is refused by the agents, as on a real host.
pub fn write_launch_policy(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("launch-policy.toml");
    let mut list = tribune_agent::AllowList::default();
    let scripts = ENCLAVES
        .iter()
        .map(|(.., script, _)| vec!["-c".to_string(), script.to_string()])
        .collect();
    list.allow_program(DEMO_SHELL, Some(scripts))
        .with_context(|| format!("hashing {DEMO_SHELL}"))?;
    list.write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

pub struct Agents(pub Vec<Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        // Agents stop their enclaves and remove their cgroups on SIGTERM: give them longer.
        tribune_testkit::process::terminate(self.0.iter_mut(), Duration::from_secs(10));
    }
}

/// The child gets SIGTERM when `tribune dev` dies, however it dies (a signal before its own
/// handler is installed, SIGKILL): nothing of a dev session outlives it.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Stores the demo policies and enclaves through the API; with `vm`, the VM on the first VM
/// host too.
pub async fn seed(http: &reqwest::Client, api: &str, vm: bool) -> anyhow::Result<()> {
    for (name, source) in POLICIES {
        let r = http
            .put(format!("{api}/v1/policies/{name}"))
            .json(&json!({ "source": source }))
            .send()
            .await
            .with_context(|| format!("storing policy {name}"))?;
        if !r.status().is_success() {
            anyhow::bail!(
                "storing policy {name}: {}",
                r.text().await.unwrap_or_default()
            );
        }
    }
    let mut bodies: Vec<(&str, serde_json::Value)> = ENCLAVES
        .iter()
        .map(|(id, host, tier, cmd, tamper)| {
            let mut process = json!({ "cmd": [DEMO_SHELL, "-c", cmd] });
            if let Some(s) = tamper {
                process["sim"] = json!({ "tamper_evidence_after_s": s });
            }
            let body = json!({
                "id": id, "tenant": "demo", "labels": { "tier": tier }, "tee": "sim",
                "placement": { "host": host, "epoch": 1 },
                "launch": { "process": process },
            });
            (*id, body)
        })
        .collect();
    if vm {
        // Only QEMU hosts can take it: their agents' `tribune.dev/runtime` label says so.
        bodies.push((
            "vm",
            json!({
                "id": "vm", "tenant": "demo", "labels": { "tier": "vm" }, "tee": "sim",
                "requested": { "cpu_millicores": 250 },
                "placement": { "host": VM_HOSTS[0], "epoch": 1 },
                "launch": { "qemu": { "memory_mib": 32 } },
            }),
        ));
    }
    for (id, body) in bodies {
        let r = http
            .put(format!("{api}/v1/enclaves/{id}"))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("storing enclave {id}"))?;
        if !r.status().is_success() {
            anyhow::bail!(
                "storing enclave {id}: {}",
                r.text().await.unwrap_or_default()
            );
        }
    }
    Ok(())
}

/// Where the agent of demo host `i` (0-based) serves its metrics: `PORT_BASE+80+i`, so the
/// default `--port-base 7400` gives h1 the agent's usual 127.0.0.1:7480 and h2 7481 (two agents
/// on one default port: the second would serve none), and a `tribune dev` on other ports
/// meets no other's agents. `off` past port 65535.
pub fn metrics_listen(port_base: u16, i: usize) -> String {
    u16::try_from(80 + i)
        .ok()
        .and_then(|d| port_base.checked_add(d))
        .map_or_else(|| "off".to_string(), |p| format!("127.0.0.1:{p}"))
}

/// The hosts whose agents `tribune dev` starts: the demo hosts, and the VM hosts with `vm`.
pub fn hosts(vm: bool) -> Vec<&'static str> {
    let vms = if vm { &VM_HOSTS[..] } else { &[] };
    HOSTS.iter().chain(vms).copied().collect()
}

/// Writes the VM hosts' launch allow-list to `dir/launch-policy-qemu.toml`: QEMU guests, no
/// programs.
fn write_qemu_launch_policy(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("launch-policy-qemu.toml");
    let list = tribune_agent::AllowList {
        qemu: Some(Default::default()),
        ..Default::default()
    };
    list.write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts one agent per demo host (instance `devPORT_BASE-HOST`): enforcing as root,
/// observe-only otherwise; they launch only what [`write_launch_policy`] allows; metrics on
/// [`metrics_listen`]. With `vm`, the [`VM_HOSTS`] too: QEMU runtime, the first declaring
/// half a core.
pub fn start_agents(
    exe: &Path,
    dir: &Path,
    tls_dir: &Path,
    controllers: &[String],
    observe_only: bool,
    port_base: u16,
    vm: bool,
) -> anyhow::Result<Agents> {
    let policy = write_launch_policy(dir)?;
    let qemu_policy = if vm {
        Some(write_qemu_launch_policy(dir)?)
    } else {
        None
    };
    let mut agents = Agents(Vec::new());
    for (i, host) in hosts(vm).into_iter().enumerate() {
        let vm_host = VM_HOSTS.contains(&host);
        let mut extra: Vec<String> = Vec::new();
        if vm_host {
            extra.extend(["--runtime", "qemu"].map(String::from));
            if host == VM_HOSTS[0] {
                extra.extend(["--capacity".to_string(), SMALL_HOST.to_string()]);
            }
        }
        let launch = match (&qemu_policy, vm_host) {
            (Some(q), true) => q,
            _ => &policy,
        };
        let log = std::fs::File::create(dir.join(format!("agent-{host}.log")))?;
        let mut cmd = Command::new(exe);
        let child = die_with_parent(&mut cmd)
            .args(["agent", "run"])
            .args(super::logging::child_args())
            // Named by the ports too: two `tribune dev` on one host (a developer's and a
            // test's) never share cgroups or namespaces, nor clean up each other's.
            .args([
                "--instance",
                &format!("dev{port_base}-{host}"),
                "--host-id",
                host,
            ])
            .arg("--data-dir")
            .arg(dir.join(format!("agent-{host}")))
            .arg("--tls-dir")
            .arg(tls_dir)
            .arg("--launch-policy")
            .arg(launch)
            .args(&extra)
            .args(observe_only.then_some("--observe-only"))
            .args(["--metrics-listen", &metrics_listen(port_base, i)])
            // Messages between the demo hosts' enclaves (docs/messages.md "Across hosts"), on
            // a port the kernel picks: the agent tells the controllers the one it bound.
            .args(["--peer-listen", "127.0.0.1:0"])
            .arg("--controllers")
            .args(controllers)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting the agent of {host}"))?;
        agents.0.push(child);
    }
    Ok(agents)
}

pub fn agent_logs(dir: &Path, vm: bool) -> Vec<PathBuf> {
    hosts(vm)
        .iter()
        .map(|h| dir.join(format!("agent-{h}.log")))
        .collect()
}

/// One line for a log entry worth showing, or `None`. `attested`: enclaves whose first
/// verdict was shown.
pub fn describe(e: &LogEntry, attested: &mut std::collections::HashSet<String>) -> Option<String> {
    let subject = e.subject.as_str();
    let index = e.index;
    let what = match &e.detail {
        // Re-attestations succeed every few seconds: say it once per enclave.
        LogDetail::Verdict(v) if v.trusted && attested.insert(subject.to_string()) => format!(
            "attested (sim evidence, verified by controller {})",
            v.verified_by
        ),
        LogDetail::Verdict(v) if v.trusted => return None,
        LogDetail::Verdict(v) => format!("evidence REFUSED: {}", v.reasons.join("; ")),
        LogDetail::Violation(ViolationDetail::OverLimit(o)) => format!(
            "over its limit: {} millicores > {} (report seq {})",
            o.cpu_millicores.map_or("?".into(), |c| c.to_string()),
            shown(o.limit_cpu_millicores),
            shown(o.seq)
        ),
        LogDetail::Violation(ViolationDetail::Refused(_)) => return None,
        LogDetail::Violation(ViolationDetail::AttestationFailed(_)) => {
            "violation: \"attestation.failed\"".to_string()
        }
        LogDetail::Action(ActionDetail::Ladder(a)) => match a.action {
            Step::Throttle => format!(
                "THROTTLED to {} millicores ({})",
                a.cpu_cap_millicores, a.cause
            ),
            Step::Suspend => format!("SUSPENDED ({})", a.cause),
            Step::Migrate => "migration requested".to_string(),
            Step::None => "released: back within its limit".to_string(),
            Step::Notify => "notify".to_string(),
        },
        LogDetail::Action(ActionDetail::Lend(l)) => match l.action {
            LendMove::Lend => format!(
                "lends {} millicores of idle guarantee",
                l.lent_cpu_millicores
            ),
            LendMove::Reclaim => "lent CPU returned".to_string(),
        },
        LogDetail::Migration(MigrationDetail::LiveStart {
            from, to, cause, ..
        }) => {
            let why = match cause {
                LiveCause::Policy => "its policy",
                LiveCause::Drain => "its host drains",
                LiveCause::Request => "an operator asked",
            };
            format!("LIVE MIGRATION {from} → {to} started ({why})")
        }
        LogDetail::Migration(MigrationDetail::LiveCommitted {
            from,
            to,
            epoch,
            downtime_ms,
            total_time_ms,
            ..
        }) => format!(
            "MIGRATED {from} → {to}: runs there under epoch {epoch} (downtime {downtime_ms} ms, total {total_time_ms} ms)"
        ),
        LogDetail::Migration(MigrationDetail::LiveRolledBack { from, reason, .. }) => {
            format!("migration rolled back, runs on {from}: {reason}")
        }
        LogDetail::Action(ActionDetail::Borrow(b)) => match b.action {
            BorrowMove::Borrow => format!("borrows {} millicores", b.borrowed_cpu_millicores),
            BorrowMove::Return => "lent CPU returned".to_string(),
        },
        _ => return None,
    };
    Some(format!(
        "  [{index:>4}] {subject:<8} {what}\n         inspect: tribune enclave status {subject}   tribune log prove {index}"
    ))
}

/// A number, or `?` when the log left it out.
fn shown(v: Option<impl std::fmt::Display>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

/// Fetches up to 1000 log entries from `start` on (the next call continues after them).
pub async fn entries_since(http: &reqwest::Client, api: &str, start: u64) -> Vec<LogEntry> {
    let r = match http
        .get(format!(
            "{api}/v1/log/entries?start={start}&end={}&stale=true",
            start + 999
        ))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("reading the log: {e}");
            return Vec::new();
        }
    };
    match r.json::<EntriesPage>().await {
        Ok(page) => page
            .entries
            .into_iter()
            .map(|v| v.entry)
            .filter(|e| e.index >= start)
            .collect(),
        Err(e) => {
            tracing::debug!("reading the log: {e}");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_demo_agent_gets_its_own_metrics_port_from_the_base() {
        assert_eq!(super::metrics_listen(7400, 0), "127.0.0.1:7480");
        assert_eq!(super::metrics_listen(7400, 1), "127.0.0.1:7481");
        assert_eq!(super::metrics_listen(20_000, 1), "127.0.0.1:20081");
        assert_eq!(super::metrics_listen(65_500, 0), "off");
    }
}
