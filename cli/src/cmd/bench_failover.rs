//! `tribune bench failover`: `tribune_bench::failover` (kill -9, or SIGTERM with `--graceful`)
//! or `tribune_bench::soak` (`--soak SECONDS`, no kills) at the product defaults unless flags
//! override them, printed, with the storage issue's goals judged only at the defaults.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::bench::{goal_line, result_line};
use super::output::Format;

/// The storage issue's goal, judged at the product defaults.
const GOAL_FAILOVER_P99_MS: f64 = 300.0;

/// What `tribune bench failover` runs.
pub struct Mode {
    pub trials: usize,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_ms: Option<u64>,
    pub load_clients: usize,
    pub graceful: bool,
    pub soak: Option<u64>,
}

pub async fn run(exe: &Path, mode: Mode, format: Format) -> anyhow::Result<ExitCode> {
    // The product defaults unless a flag overrides them: the goal is judged there.
    let defaults = tribune_controller::node::ControllerConfig::new(
        0,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        PathBuf::new(),
    );
    let product_defaults = mode.heartbeat_ms.is_none() && mode.election_timeout_ms.is_none();
    let opts = tribune_bench::FailoverOpts {
        trials: mode.trials,
        heartbeat_ms: mode.heartbeat_ms.unwrap_or(defaults.heartbeat_ms),
        election_timeout_ms: mode
            .election_timeout_ms
            .unwrap_or(defaults.election_timeout_ms),
        load_clients: mode.load_clients,
        stop: if mode.graceful {
            tribune_bench::Stop::Sigterm
        } else {
            tribune_bench::Stop::Kill9
        },
    };
    let settings = format!(
        "heartbeat {} ms, election timeout {} ms{}, {} background writers",
        opts.heartbeat_ms,
        opts.election_timeout_ms,
        if product_defaults {
            " (product defaults)"
        } else {
            " (not the product defaults: the goal is judged at them)"
        },
        opts.load_clients
    );
    if let Some(seconds) = mode.soak {
        let r = tribune_bench::soak(exe, opts, seconds).await?;
        if !format.is_structured() {
            println!(
                "soak {} s without kills: {} elections (term {} → {}), {} leader changes, {} writes acknowledged, {} failed, {} acknowledged writes lost; {settings}",
                r.seconds,
                r.elections,
                r.term_start,
                r.term_end,
                r.leader_changes,
                r.load_writes,
                r.load_failed,
                r.lost_writes
            );
            goal_line(
                "0 spurious elections under full load at the product defaults",
                product_defaults && r.elections == 0 && r.leader_changes == 0,
                &format!(
                    "{} elections, {} leader changes",
                    r.elections, r.leader_changes
                ),
            );
            goal_line(
                "0 acknowledged writes lost",
                r.lost_writes == 0,
                &format!("{} lost", r.lost_writes),
            );
        }
        result_line(
            format,
            &json!({"scenario": "failover-soak", "product_defaults": product_defaults, "result": r}),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let r = tribune_bench::failover(exe, opts, |i, d| {
        eprintln!("trial {:>2}: {:.0} ms", i + 1, d.as_secs_f64() * 1000.0);
    })
    .await?;
    if !format.is_structured() {
        let how = if mode.graceful { "SIGTERM" } else { "kill -9" };
        println!(
            "failover ({how}) over {} trials: p50 {:.0} ms  p99 {:.0} ms  (min {:.0}, max {:.0}); {settings}",
            r.trials, r.recovery_ms.p50, r.recovery_ms.p99, r.recovery_ms.min, r.recovery_ms.max,
        );
        if let Some(e) = &r.exit_ms {
            println!(
                "stopped leader exited after SIGTERM: p50 {:.0} ms  p99 {:.0} ms",
                e.p50, e.p99
            );
        }
        println!(
            "background load: {} writes acknowledged, {} failed, {} acknowledged writes lost",
            r.load_writes, r.load_failed, r.lost_writes
        );
        if !mode.graceful {
            goal_line(
                "failover p99 <= 300 ms at the product defaults",
                product_defaults && r.recovery_ms.p99 <= GOAL_FAILOVER_P99_MS,
                &format!(
                    "p99 {:.0} ms = {:.2}x the goal",
                    r.recovery_ms.p99,
                    r.recovery_ms.p99 / GOAL_FAILOVER_P99_MS
                ),
            );
        }
        goal_line(
            "0 acknowledged writes lost",
            r.lost_writes == 0,
            &format!("{} lost", r.lost_writes),
        );
    }
    result_line(
        format,
        &json!({"scenario": "failover", "product_defaults": product_defaults, "result": r}),
    )?;
    Ok(ExitCode::SUCCESS)
}
