//! The breach phase of `tribune bench migrate`: a policy's limit lowered under what the VM
//! uses, with `on over_limit { migrate now }`, and the time from that breach to the guest
//! running on the target, step by step. Each trial: `PUT` the strict policy (the breach
//! starts once it is committed) → the controllers' decision on the next usage report (the
//! log's `action` entry) → the leader's manager starts the migration (the target checked:
//! attested within `attest_max_age_s`, room, TEE) → the target ready (QEMU `-incoming`,
//! limits in place) → committed under epoch + 1 → the guest's counter advancing on the
//! target. As soon as the migration has started the policy is relaxed again (the ladder's
//! `migrate` step is sticky on the source until the commit ends it), so the guest does not
//! breach again on the target: the next trial starts it, once the VM holds a trusted verdict
//! from its new host (before that its reports do not count, and no breach could be seen).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Summary;
use crate::migrate::{QemuFigures, QemuSamples, Setup, call, finished, running_on, wait};

#[derive(Debug, Clone, Serialize)]
pub struct BreachResult {
    pub trials: usize,
    pub committed: usize,
    pub rolled_back: usize,
    /// From the breach (the strict policy committed) to: the decision logged,
    pub decided_ms: Summary,
    /// the migration started (target chosen and checked),
    pub started_ms: Summary,
    /// the target ready (paused, listening, limits in place),
    pub ready_ms: Summary,
    /// committed (switch-over: placed on the target under the new epoch),
    pub committed_ms: Summary,
    /// the guest's counter advancing on the target.
    pub running_ms: Summary,
    pub qemu: QemuFigures,
    /// Why trials rolled back, or why the phase stopped.
    pub reasons: Vec<String>,
}

fn policy(limit: &str) -> Value {
    json!({"source": format!(
        "policy \"bench-breach\" {{\n  match tenant == \"bench\"\n  limit {{ cpu = {limit} }}\n  on over_limit {{ migrate now }}\n}}\n"
    )})
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn put_policy(st: &Setup, limit: &str) -> anyhow::Result<()> {
    let (s, b) = call(
        &st.http,
        reqwest::Method::PUT,
        &format!("{}/v1/policies/bench-breach", st.api),
        Some(&policy(limit)),
    )
    .await?;
    if s != 200 && s != 201 {
        bail!("PUT the policy (limit {limit}): {s} {b}");
    }
    Ok(())
}

/// The log's size now.
async fn tree_size(st: &Setup) -> anyhow::Result<u64> {
    let (_, v) = call(
        &st.http,
        reqwest::Method::GET,
        &format!("{}/v1/log/sth", st.api),
        None,
    )
    .await?;
    v["tree_size"]
        .as_u64()
        .ok_or_else(|| anyhow::anyhow!("no tree_size in {v}"))
}

/// When the first `action` entry for the VM at or after index `from` was written.
async fn decided_at(st: &Setup, from: u64) -> anyhow::Result<i64> {
    let (_, v) = call(
        &st.http,
        reqwest::Method::GET,
        &format!(
            "{}/v1/log/entries?start={from}&end={}&kind=action&subject=vm",
            st.api,
            from + 999
        ),
        None,
    )
    .await?;
    v["entries"]
        .as_array()
        .and_then(|es| es.iter().filter_map(|e| e["at_ms"].as_i64()).min())
        .ok_or_else(|| anyhow::anyhow!("no action entry for the VM since log index {from}"))
}

/// Waits (up to 60 s) until the VM on `on` holds a trusted verdict from `on` given at or
/// after `since_ms` (its arrival): only then do its usage reports count, and a breach is
/// decided on the next one.
async fn attested_on(st: &Setup, on: &str, since_ms: i64) -> anyhow::Result<()> {
    wait(
        "the VM attested on its new host",
        Duration::from_secs(60),
        async || {
            let (_, v) = call(
                &st.http,
                reqwest::Method::GET,
                &format!("{}/v1/enclaves/vm/status", st.api),
                None,
            )
            .await
            .ok()?;
            let a = &v["status"]["attestation"];
            (a["trusted"] == true
                && a["host"] == on
                && a["verified_at_ms"].as_i64().unwrap_or(0) >= since_ms)
                .then_some(())
        },
    )
    .await
}

/// `trials` policy-driven migrations, the VM starting on `on`, where it arrived at
/// `arrived_ms` (wall clock).
pub(crate) async fn breach(
    st: &Setup,
    trials: usize,
    mut on: &str,
    mut arrived_ms: i64,
) -> anyhow::Result<BreachResult> {
    let (http, api) = (&st.http, st.api.as_str());
    put_policy(st, "8").await?;
    let mut d = [(); 5].map(|_| Vec::new());
    let (mut qemu, mut reasons, mut rolled_back) = (QemuSamples::default(), Vec::new(), 0);
    for trial in 0..trials {
        let to = if on == "bm1" { "bm2" } else { "bm1" };
        attested_on(st, on, arrived_ms)
            .await
            .with_context(|| format!("breach trial {trial}"))?;
        let from_index = tree_size(st).await?;
        put_policy(st, "100m").await?;
        let (t0, w0) = (Instant::now(), wall_ms());
        let current = wait(
            "a policy-driven migration to start",
            Duration::from_secs(60),
            async || {
                let (_, v) = call(
                    http,
                    reqwest::Method::GET,
                    &format!("{api}/v1/migrations"),
                    None,
                )
                .await
                .ok()?;
                v["current"]
                    .as_array()?
                    .iter()
                    .find(|m| m["enclave"] == "vm")
                    .cloned()
            },
        )
        .await
        .with_context(|| format!("breach trial {trial}"))?;
        put_policy(st, "8").await?;
        let id = current["id"].as_str().unwrap_or_default().to_string();
        let done = finished(http, api, &id)
            .await
            .with_context(|| format!("breach trial {trial}"))?;
        if done["phase"] != "committed" {
            rolled_back += 1;
            reasons.push(done["reason"].as_str().unwrap_or_default().to_string());
            // A rollback leaves it on its source, where it was.
            continue;
        }
        let ran = match running_on(st.dir.path(), to).await {
            Ok(t) => t,
            Err(e) => {
                // Committed but not running on the target: say what the controllers hold of
                // it, and stop the phase (the figures so far stand).
                let (_, v) = call(
                    http,
                    reqwest::Method::GET,
                    &format!("{api}/v1/enclaves/vm/status"),
                    None,
                )
                .await
                .unwrap_or((0, Value::Null));
                reasons.push(format!(
                    "trial {trial}: committed to {to} but not running there: {e:#}; state {}, ladder {}, allocation {}",
                    v["state"], v["status"]["ladder"], v["allocation"]
                ));
                break;
            }
        };
        let decided = decided_at(st, from_index).await?;
        let since = |at: Option<i64>| at.map_or(f64::NAN, |t| (t - w0) as f64);
        d[0].push(since(Some(decided)));
        d[1].push(since(done["started_ms"].as_i64()));
        d[2].push(since(done["ready_ms"].as_i64()));
        d[3].push(since(done["ended_ms"].as_i64()));
        d[4].push((ran - t0).as_secs_f64() * 1000.0);
        qemu.push(&done);
        on = to;
        arrived_ms = done["ended_ms"].as_i64().unwrap_or(0);
    }
    let [mut a, mut b, mut c, mut e, mut f] = d;
    Ok(BreachResult {
        trials,
        committed: f.len(),
        rolled_back,
        decided_ms: Summary::of_ms(&mut a),
        started_ms: Summary::of_ms(&mut b),
        ready_ms: Summary::of_ms(&mut c),
        committed_ms: Summary::of_ms(&mut e),
        running_ms: Summary::of_ms(&mut f),
        qemu: qemu.summary(),
        reasons,
    })
}
