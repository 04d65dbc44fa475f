//! QEMU live migration over QMP: the source's job (`migrate-set-parameters`, `migrate`, then
//! `query-migrate` polled until it ends) and its progress in the agent's terms.
//!
//! The job runs on the VM's second monitor (`qemu::MIGRATE_SOCKET`), in its own task, so the
//! agent keeps sampling and applying plans while a migration runs. The target was started with
//! `-incoming URI -S`: it loads the state and stays paused until the controllers have
//! committed the new placement epoch and its plan resumes it.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::qmp::Qmp;
use crate::error::{AgentError, Result};
use crate::test_hold::{self, Hold};

/// How often `query-migrate` is polled.
pub const POLL_PERIOD: Duration = Duration::from_millis(25);
/// Longest a migration may run before the job cancels it.
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of one outgoing migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrateOptions {
    /// Longest pause QEMU aims for at switch-over (`downtime-limit`, ms).
    pub downtime_limit_ms: u64,
    /// Bandwidth cap (`max-bandwidth`, bytes/s); QEMU's default (32 or 128 MiB/s) is far
    /// below a loopback's or a datacentre link's.
    pub max_bandwidth_bytes_per_sec: u64,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            downtime_limit_ms: 100,
            max_bandwidth_bytes_per_sec: 10 << 30,
        }
    }
}

/// Where a migration stands (`query-migrate`, QEMU's names).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MigrationProgress {
    /// `setup`, `active`, `pre-switchover`, `device`, `completed`, `failed`, `cancelling`,
    /// `cancelled`, … (`none` before it starts).
    pub status: String,
    pub transferred_bytes: u64,
    pub remaining_bytes: u64,
    pub total_bytes: u64,
    /// Pages dirtied per second in the last iteration.
    pub dirty_pages_rate: u64,
    /// Current send rate (Mbit/s).
    pub mbps: f64,
    /// QEMU's estimate of the pause at switch-over (ms).
    pub expected_downtime_ms: u64,
    /// The measured pause, once completed (ms).
    pub downtime_ms: Option<u64>,
    /// Since `migrate` (ms).
    pub total_time_ms: u64,
    pub setup_time_ms: u64,
    /// Why it failed (`error-desc`).
    pub error: Option<String>,
}

impl MigrationProgress {
    /// From `query-migrate`'s return value; absent fields read as 0.
    pub fn from_query(v: &Value) -> MigrationProgress {
        let n = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let ram = v.get("ram").cloned().unwrap_or(Value::Null);
        MigrationProgress {
            status: v
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("none")
                .to_string(),
            transferred_bytes: n(&ram, "transferred"),
            remaining_bytes: n(&ram, "remaining"),
            total_bytes: n(&ram, "total"),
            dirty_pages_rate: n(&ram, "dirty-pages-rate"),
            mbps: ram.get("mbps").and_then(Value::as_f64).unwrap_or(0.0),
            expected_downtime_ms: n(v, "expected-downtime"),
            downtime_ms: v.get("downtime").and_then(Value::as_u64),
            total_time_ms: n(v, "total-time"),
            setup_time_ms: n(v, "setup-time"),
            error: v
                .get("error-desc")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
    }

    /// The migration has ended (either way).
    pub fn is_final(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "cancelled")
    }

    pub fn succeeded(&self) -> bool {
        self.status == "completed"
    }
}

/// The name a migration stream's socket is handed to QEMU under (QMP `getfd`), for a VM in a
/// network namespace (`agent/handoff.rs`).
pub const STREAM_FD: &str = "tribune-migration";
/// How long a source waits to connect to its target before it hands the socket over.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);

/// Connects to `target` (`ADDR:PORT`, from the agent's namespace) and hands the socket to the
/// QEMU on `qmp` as [`STREAM_FD`]; the agent's copy closes when this returns.
async fn hand_over(qmp: &mut Qmp, target: &str) -> Result<()> {
    use std::os::fd::AsFd;
    let stream = tokio::time::timeout(CONNECT_WITHIN, tokio::net::TcpStream::connect(target))
        .await
        .map_err(|_| AgentError::Runtime(format!("connecting to {target}: timed out")))?
        .map_err(|e| AgentError::io("connect", target, e))?;
    let _ = stream.set_nodelay(true);
    qmp.pass_fd(STREAM_FD, stream.as_fd()).await
}

/// Runs an outgoing migration of the VM whose migration monitor is `sock` to `uri`
/// (`tcp:ADDR:PORT`) — or, with `handed` (`ADDR:PORT`), over a socket the agent connects and
/// hands to QEMU (a VM in a network namespace: `agent/handoff.rs`) —, sending every polled
/// progress to `progress` (dropped when it is full),
/// and returns the final one. A migration that has not ended after [`MIGRATION_TIMEOUT`] is
/// cancelled. When it completed, the source is paused (`postmigrate`): only a rollback
/// (`cont`) runs it again. `data_dir` is the agent's (test-only hold points:
/// `crate::test_hold`).
pub async fn run_outgoing(
    sock: &Path,
    uri: &str,
    handed: Option<&str>,
    opts: MigrateOptions,
    progress: Option<mpsc::Sender<MigrationProgress>>,
    data_dir: &Path,
) -> Result<MigrationProgress> {
    let mut qmp = Qmp::connect(sock, Duration::from_secs(5)).await?;
    if test_hold::named(data_dir, Hold::Transfer) {
        qmp.execute(
            "migrate-set-capabilities",
            Some(json!({"capabilities": [
                {"capability": "pause-before-switchover", "state": true}
            ]})),
        )
        .await?;
    }
    qmp.execute(
        "migrate-set-parameters",
        Some(json!({
            "downtime-limit": opts.downtime_limit_ms,
            "max-bandwidth": opts.max_bandwidth_bytes_per_sec,
        })),
    )
    .await?;
    match handed {
        // The agent connects and hands QEMU the socket (`agent/handoff.rs`).
        Some(target) => {
            hand_over(&mut qmp, target).await?;
            qmp.migrate(&format!("fd:{STREAM_FD}")).await?;
        }
        None => qmp.migrate(uri).await?,
    }
    watch(&mut qmp, uri, progress, data_dir).await
}

/// Follows an outgoing migration already started (by this agent before a restart): its
/// progress to `progress` until it ends, as [`run_outgoing`] does after `migrate`.
pub async fn watch_outgoing(
    sock: &Path,
    progress: Option<mpsc::Sender<MigrationProgress>>,
    data_dir: &Path,
) -> Result<MigrationProgress> {
    let mut qmp = Qmp::connect(sock, Duration::from_secs(5)).await?;
    watch(&mut qmp, "its target", progress, data_dir).await
}

async fn watch(
    qmp: &mut Qmp,
    uri: &str,
    progress: Option<mpsc::Sender<MigrationProgress>>,
    data_dir: &Path,
) -> Result<MigrationProgress> {
    let mut deadline = tokio::time::Instant::now() + MIGRATION_TIMEOUT;
    loop {
        let p = MigrationProgress::from_query(&qmp.query_migrate().await?);
        // Paused before switching over (only ever asked for by a test hold, here or by this
        // agent before a restart): go on.
        if p.status == "pre-switchover" {
            test_hold::hold(data_dir, Hold::Transfer).await;
            qmp.execute("migrate-continue", Some(json!({"state": "pre-switchover"})))
                .await?;
            deadline = tokio::time::Instant::now() + MIGRATION_TIMEOUT;
            continue;
        }
        if p.succeeded() {
            test_hold::hold(data_dir, Hold::Switchover).await;
        }
        if let Some(tx) = &progress {
            let _ = tx.try_send(p.clone());
        }
        if p.is_final() {
            return Ok(p);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = qmp.execute("migrate_cancel", None).await;
            return Err(AgentError::Qmp(format!(
                "migration to {uri} still {} after {MIGRATION_TIMEOUT:?}: cancelled",
                p.status
            )));
        }
        tokio::time::sleep(POLL_PERIOD).await;
    }
}

/// Whether a VM started with `-incoming defer` still waits for its stream: run state
/// `inmigrate` and no incoming migration started (`query-migrate` answers no status).
pub async fn waits_for_stream(sock: &Path) -> bool {
    let Ok(mut qmp) = Qmp::connect(sock, Duration::from_secs(2)).await else {
        return false;
    };
    let Ok(status) = qmp.query_status().await else {
        return false;
    };
    let Ok(m) = qmp.query_migrate().await else {
        return false;
    };
    status.status == "inmigrate" && MigrationProgress::from_query(&m).status == "none"
}

/// Whether the VM has an outgoing migration under way or completed (`query-migrate` and
/// `query-status`): after an agent restart such a VM is adopted paused and is never resumed
/// but by a rollback, since its state may run on a target already.
pub async fn outgoing_started(sock: &Path) -> Result<bool> {
    let mut qmp = Qmp::connect(sock, Duration::from_secs(2)).await?;
    let p = MigrationProgress::from_query(&qmp.query_migrate().await?);
    let status = qmp.execute("query-status", None).await?;
    let runstate = status
        .get("status")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Ok(is_outgoing(&p.status, runstate))
}

/// Whether `query-migrate`'s `status` and `query-status`'s run state say the VM is (or was)
/// the **source** of a migration. A VM started with `-incoming` answers `query-migrate` with
/// its *incoming* migration's status — `completed` once its state arrived — so `completed`
/// alone would take a target for a source (and a restarted target agent would keep the VM
/// it just received paused, then stop it at the migration's end). A source that completed
/// is `postmigrate`; one still sending is not `inmigrate`. Pure.
pub fn is_outgoing(status: &str, runstate: &str) -> bool {
    match status {
        "none" | "failed" | "cancelled" => false,
        "completed" => runstate == "postmigrate",
        _ => runstate != "inmigrate",
    }
}

/// Cancels a running outgoing migration (the source keeps running); harmless when none runs.
pub async fn cancel(sock: &Path) -> Result<()> {
    let mut qmp = Qmp::connect(sock, Duration::from_secs(2)).await?;
    qmp.execute("migrate_cancel", None).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_not_taken_for_a_source() {
        // Sources: sending, paused before the switch-over, completed.
        assert!(is_outgoing("active", "running"));
        assert!(is_outgoing("pre-switchover", "paused"));
        assert!(is_outgoing("device", "finish-migrate"));
        assert!(is_outgoing("completed", "postmigrate"));
        // Targets: receiving, received (paused, waiting for the commit), resumed.
        assert!(!is_outgoing("active", "inmigrate"));
        assert!(!is_outgoing("completed", "paused"));
        assert!(!is_outgoing("completed", "prelaunch"));
        assert!(!is_outgoing("completed", "running"));
        // No migration, or one that ended without moving it.
        assert!(!is_outgoing("none", "running"));
        assert!(!is_outgoing("failed", "running"));
        assert!(!is_outgoing("cancelled", "paused"));
    }

    #[test]
    fn progress_reads_query_migrate() {
        // As QEMU 7.2 answered on a 64 MiB TCG guest.
        let v: Value = serde_json::from_str(
            r#"{"status": "completed", "setup-time": 5, "downtime": 6, "total-time": 14,
                "ram": {"total": 67444736, "remaining": 0, "mbps": 232.34,
                        "transferred": 185157, "dirty-pages-rate": 0, "page-size": 4096}}"#,
        )
        .unwrap();
        let p = MigrationProgress::from_query(&v);
        assert!(p.is_final() && p.succeeded());
        assert_eq!(p.transferred_bytes, 185157);
        assert_eq!(p.total_bytes, 67444736);
        assert_eq!(p.downtime_ms, Some(6));
        assert_eq!(p.total_time_ms, 14);
        assert!((p.mbps - 232.34).abs() < 1e-9);

        let active: Value = serde_json::from_str(
            r#"{"status": "active", "expected-downtime": 40,
                "ram": {"transferred": 10, "remaining": 20, "dirty-pages-rate": 300}}"#,
        )
        .unwrap();
        let p = MigrationProgress::from_query(&active);
        assert!(!p.is_final());
        assert_eq!(
            (
                p.remaining_bytes,
                p.dirty_pages_rate,
                p.expected_downtime_ms
            ),
            (20, 300, 40)
        );
        assert_eq!(p.downtime_ms, None);

        let failed: Value =
            serde_json::from_str(r#"{"status": "failed", "error-desc": "Connection refused"}"#)
                .unwrap();
        let p = MigrationProgress::from_query(&failed);
        assert!(p.is_final() && !p.succeeded());
        assert_eq!(p.error.as_deref(), Some("Connection refused"));
        assert_eq!(MigrationProgress::from_query(&json!({})).status, "none");
    }
}
