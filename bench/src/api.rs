//! The controller API calls the scenarios share: writes retried while the cluster elects, and
//! the attestation log read page by page as typed entries.

use std::time::{Duration, Instant};

use tribune_controller::api::log::EntriesPage;
use tribune_controller::state::LogEntry;

/// PUT with retries while the cluster elects or is busy (503).
pub(crate) async fn put_json(
    http: &reqwest::Client,
    endpoints: &[String],
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = 0usize;
    loop {
        let ep = &endpoints[i % endpoints.len()];
        i += 1;
        let r = http.put(format!("{ep}{path}")).json(body).send().await;
        match r {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) if r.status().as_u16() != 503 => {
                let status = r.status();
                anyhow::bail!(
                    "PUT {path}: {status} {}",
                    r.text().await.unwrap_or_default()
                );
            }
            _ if Instant::now() > deadline => anyhow::bail!("PUT {path}: no success within 30 s"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Every log entry of the cluster (stale reads of one controller), from `from` on.
pub(crate) async fn log_entries(
    http: &reqwest::Client,
    endpoint: &str,
    mut from: u64,
    stale: bool,
) -> anyhow::Result<Vec<LogEntry>> {
    let mut all = Vec::new();
    let mut busy = 0;
    loop {
        let r = http
            .get(format!(
                "{endpoint}/v1/log/entries?start={from}&end={}&stale={stale}",
                from + 999
            ))
            .send()
            .await?;
        // 503: catching up or electing; try again for a while.
        if r.status().as_u16() == 503 && busy < 20 {
            busy += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let page: EntriesPage = r
            .error_for_status()?
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("log entries: unexpected answer: {e}"))?;
        all.extend(page.entries.into_iter().map(|v| v.entry));
        match page.next {
            Some(n) if n > from => from = n,
            _ => return Ok(all),
        }
    }
}
