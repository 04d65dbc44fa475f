//! `tribune enclave migrate ID [--to HOST] [--force]` (`POST /v1/enclaves/{id}/migrate`), then
//! its live progress from `GET /v1/migrations` until it is committed or rolled back; and
//! `tribune enclave migrations`. The bodies are the controller's own types
//! (`api::migrate::{MigrateRequest, Migrations}`, `state::LiveMigration`).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tribune_controller::api::migrate::{MigrateRequest, Migrations};
use tribune_controller::state::{LiveMigration, LivePhase};

use super::client::{Client, ClientOpts, Column};
use super::output::{self, Format};
use super::units::Unit;

/// `tribune enclave migrate`.
#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The QEMU enclave to move.
    pub id: String,
    /// The target host (checked: freshly attested, trusted, with room); default: the
    /// scheduler's choice.
    #[arg(long)]
    pub to: Option<String>,
    /// Migrate it although a policy suspended it, or within its cool-down (recorded in the
    /// log).
    #[arg(long)]
    pub force: bool,
    /// Return once it started, without following it.
    #[arg(long)]
    pub no_wait: bool,
    /// Give up following after this many seconds (the migration goes on).
    #[arg(long, default_value_t = 300)]
    pub wait_s: u64,
    #[command(flatten)]
    pub opts: ClientOpts,
}

pub const MIGRATION_COLUMNS: &[Column] = &[
    Column::new("ID", "/id"),
    Column::new("ENCLAVE", "/enclave"),
    Column::new("FROM", "/from"),
    Column::new("TO", "/to"),
    Column::new("EPOCH", "/epoch"),
    Column::new("PHASE", "/phase"),
    Column::new("CAUSE", "/cause"),
    Column::new("TRANSFERRED", "/progress/transferred_bytes").unit(Unit::Bytes),
    Column::new("DOWNTIME(ms)", "/progress/downtime_ms"),
    Column::new("TOTAL(ms)", "/progress/total_time_ms"),
    Column::new("STARTED", "/started_ms").unit(Unit::Age),
    Column::new("REASON", "/reason"),
    Column::new("REMAINING", "/progress/remaining_bytes")
        .unit(Unit::Bytes)
        .wide(),
    Column::new("DIRTY PAGES/s", "/progress/dirty_pages_rate").wide(),
    Column::new("EXPECTED DOWNTIME(ms)", "/progress/expected_downtime_ms").wide(),
    Column::new("ACTOR", "/actor").wide(),
    Column::new("FORCED", "/forced").wide(),
    Column::new("TARGET MEASUREMENT", "/target_measurement").wide(),
];

/// A measurement's first 16 characters and an ellipsis (whole when shorter).
fn abbreviated(measurement: &str) -> String {
    match measurement.char_indices().nth(16) {
        Some((at, _)) => format!("{}…", &measurement[..at]),
        None => measurement.to_string(),
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// One line of progress: bytes, rate, ETA, expected downtime.
pub fn progress_line(m: &LiveMigration) -> String {
    let p = &m.progress;
    match m.phase {
        LivePhase::Preparing => format!(
            "preparing: {} starts the VM paused, waiting for its state",
            m.to
        ),
        LivePhase::Transferring if p.status.is_empty() => {
            let attested = if m.target_measurement.is_empty() {
                String::new()
            } else {
                format!(
                    "{} attested afresh (measurement {}); ",
                    m.to,
                    abbreviated(&m.target_measurement)
                )
            };
            format!(
                "transferring: {attested}{} sends the state to {}",
                m.from, m.to
            )
        }
        LivePhase::Transferring => {
            let bytes_per_s = p.mbps * 1e6 / 8.0;
            let eta = if bytes_per_s > 0.0 {
                format!("{:.1} s", p.remaining_bytes as f64 / bytes_per_s)
            } else {
                "?".into()
            };
            format!(
                "{}: {:.1} of {:.1} MiB, {:.0} Mbit/s, {} dirty pages/s, ETA {eta}, expected downtime {} ms",
                p.status,
                mib(p.transferred_bytes),
                mib(p.total_bytes),
                p.mbps,
                p.dirty_pages_rate,
                p.expected_downtime_ms
            )
        }
        LivePhase::Committed => format!(
            "committed: runs on {} under epoch {}; downtime {} ms, total {} ms, {:.1} MiB transferred",
            m.to,
            m.epoch + 1,
            p.downtime_ms,
            p.total_time_ms,
            mib(p.transferred_bytes)
        ),
        LivePhase::RolledBack => format!(
            "rolled back: runs on {} under epoch {}: {}",
            m.from, m.epoch, m.reason
        ),
    }
}

pub fn migrate(args: MigrateArgs, output: Format) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.opts, output)?;
    super::client::runtime()?.block_on(async move {
        let body = serde_json::to_value(MigrateRequest {
            to: args.to.clone(),
            force: args.force,
        })?;
        let (_, _, v) = client
            .call(
                reqwest::Method::POST,
                &format!("/v1/enclaves/{}/migrate", args.id),
                Some(&body),
                &[],
            )
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let started: LiveMigration =
            serde_json::from_value(v.clone()).context("the controller's migration")?;
        let structured = !matches!(client.output, Format::Table | Format::Wide);
        if args.no_wait {
            if !output::structured(client.output, &v)? {
                println!(
                    "migration {} of {}: {} → {} started",
                    output::text(&started.id),
                    output::text(&started.enclave),
                    output::text(&started.from),
                    output::text(&started.to)
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        if !structured {
            println!(
                "migration {} of {}: {} (epoch {}) → {} (epoch {})",
                output::text(&started.id),
                output::text(&started.enclave),
                output::text(&started.from),
                started.epoch,
                output::text(&started.to),
                started.epoch + 1
            );
        }
        let deadline = Instant::now() + Duration::from_secs(args.wait_s);
        let mut last = String::new();
        loop {
            let list: Migrations = serde_json::from_value(
                client.get("/v1/migrations?stale=true").await?,
            )
            .context("the controller's migrations")?;
            let now = list
                .current
                .iter()
                .chain(list.past.iter())
                .find(|m| m.id == started.id)
                .cloned();
            if let Some(m) = now {
                let line = progress_line(&m);
                if !structured && line != last {
                    println!("  {}", output::text(&line));
                    let _ = std::io::stdout().flush();
                    last = line;
                }
                if !m.is_live() {
                    if structured {
                        output::structured(client.output, &serde_json::to_value(&m)?)?;
                    }
                    return Ok(if m.phase == LivePhase::Committed {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    });
                }
            }
            if Instant::now() >= deadline {
                anyhow::bail!(
                    "migration {} still under way after {} s (it goes on: `tribune enclave migrations`)",
                    started.id,
                    args.wait_s
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// `tribune enclave migrations`: under way, then the finished ones, newest first.
pub fn list(stale: bool, opts: &ClientOpts, output: Format) -> anyhow::Result<ExitCode> {
    let client = Client::new(opts, output)?;
    super::client::runtime()?.block_on(async move {
        let v = client.get(&format!("/v1/migrations?stale={stale}")).await?;
        let list: Migrations =
            serde_json::from_value(v.clone()).context("the controller's migrations")?;
        let all: Vec<&LiveMigration> = list.current.iter().chain(list.past.iter()).collect();
        client.print_columns(&serde_json::to_value(all)?, MIGRATION_COLUMNS);
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tribune_controller::state::{EnclaveState, LiveCause, LiveProgress};

    fn migration(phase: LivePhase, progress: LiveProgress) -> LiveMigration {
        LiveMigration {
            id: "mig-1-vm".into(),
            enclave: "vm".into(),
            from: "h1".into(),
            to: "h2".into(),
            epoch: 3,
            listen: "10.0.0.2:7501".into(),
            phase,
            cause: LiveCause::Request,
            actor: "op".into(),
            forced: false,
            prior_state: EnclaveState::Running,
            started_ms: 1,
            ready_ms: None,
            ended_ms: None,
            reason: String::new(),
            progress,
            nonce: String::new(),
            target_measurement: String::new(),
            verdict_max_age_ms: 0,
        }
    }

    #[test]
    fn each_phase_reads_as_one_line_with_its_figures() {
        let m = migration(LivePhase::Preparing, LiveProgress::default());
        assert_eq!(
            progress_line(&m),
            "preparing: h2 starts the VM paused, waiting for its state"
        );
        let mut m = migration(LivePhase::Transferring, LiveProgress::default());
        assert_eq!(progress_line(&m), "transferring: h1 sends the state to h2");
        m.target_measurement = "abcdef0123456789abcdef".into();
        assert_eq!(
            progress_line(&m),
            "transferring: h2 attested afresh (measurement abcdef0123456789…); h1 sends the state to h2"
        );
        let active = LiveProgress {
            status: "active".into(),
            transferred_bytes: 32 << 20,
            remaining_bytes: 96 << 20,
            total_bytes: 128 << 20,
            dirty_pages_rate: 1200,
            mbps: 8.0 * 1.048_576 * 64.0,
            expected_downtime_ms: 40,
            ..LiveProgress::default()
        };
        let m = migration(LivePhase::Transferring, active);
        assert_eq!(
            progress_line(&m),
            "active: 32.0 of 128.0 MiB, 537 Mbit/s, 1200 dirty pages/s, ETA 1.5 s, expected downtime 40 ms"
        );
        let done = LiveProgress {
            status: "completed".into(),
            transferred_bytes: 130 << 20,
            downtime_ms: 12,
            total_time_ms: 640,
            ..LiveProgress::default()
        };
        assert_eq!(
            progress_line(&migration(LivePhase::Committed, done)),
            "committed: runs on h2 under epoch 4; downtime 12 ms, total 640 ms, 130.0 MiB transferred"
        );
        let mut m = migration(LivePhase::RolledBack, LiveProgress::default());
        m.reason = "the target h2 failed: no room".into();
        assert_eq!(
            progress_line(&m),
            "rolled back: runs on h1 under epoch 3: the target h2 failed: no room"
        );
    }

    #[test]
    fn a_measurement_is_abbreviated_on_a_character_boundary() {
        assert_eq!(abbreviated("abcd"), "abcd");
        assert_eq!(abbreviated(&"a".repeat(16)), "a".repeat(16));
        assert_eq!(abbreviated(&"é".repeat(20)), format!("{}…", "é".repeat(16)));
    }
}
