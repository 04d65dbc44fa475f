//! `tribune bench failover`: `tribune_bench::failover` at the product defaults unless flags
//! override them, printed, with the storage issue's goal judged only at the defaults.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use super::bench::{goal_line, result_line};
use super::output::Format;

/// The storage issue's goal, judged at the product defaults.
const GOAL_FAILOVER_P99_MS: f64 = 300.0;

pub async fn run(
    exe: &Path,
    trials: usize,
    heartbeat_ms: Option<u64>,
    election_timeout_ms: Option<u64>,
    load_clients: usize,
    format: Format,
) -> anyhow::Result<ExitCode> {
    // The product defaults unless a flag overrides them: the goal is judged there.
    let defaults = tribune_controller::node::ControllerConfig::new(
        0,
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        PathBuf::new(),
    );
    let product_defaults = heartbeat_ms.is_none() && election_timeout_ms.is_none();
    let heartbeat_ms = heartbeat_ms.unwrap_or(defaults.heartbeat_ms);
    let election_timeout_ms = election_timeout_ms.unwrap_or(defaults.election_timeout_ms);
    let r = tribune_bench::failover(
        exe,
        tribune_bench::FailoverOpts {
            trials,
            heartbeat_ms,
            election_timeout_ms,
            load_clients,
        },
        |i, d| eprintln!("trial {:>2}: {:.0} ms", i + 1, d.as_secs_f64() * 1000.0),
    )
    .await?;
    if !format.is_structured() {
        println!(
            "failover over {} trials: p50 {:.0} ms  p99 {:.0} ms  (min {:.0}, max {:.0}); heartbeat {} ms, election timeout {} ms{}, {} background writers",
            r.trials,
            r.recovery_ms.p50,
            r.recovery_ms.p99,
            r.recovery_ms.min,
            r.recovery_ms.max,
            r.heartbeat_ms,
            r.election_timeout_ms,
            if product_defaults {
                " (product defaults)"
            } else {
                " (not the product defaults: the goal is judged at them)"
            },
            r.load_clients
        );
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
    result_line(
        format,
        &json!({"scenario": "failover", "product_defaults": product_defaults, "result": r}),
    )?;
    Ok(ExitCode::SUCCESS)
}
