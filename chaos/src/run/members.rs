//! Membership changes in the workload: a voter removed through the API
//! (`DELETE /v1/cluster/members/{id}`) while the faults go on, added back as a voter
//! (`POST /v1/cluster/members`) when the fault ends. A change may fail under faults (no
//! leader, a time-out): that is counted, not an anomaly; the healed cluster must end with
//! every controller a voter again ([`ensure_voters`]), or the run did not recover.

use std::time::{Duration, Instant};

/// Asks each controller in turn (any forwards to the leader) until one answers 200 or `within`
/// is over; whether the change took effect.
async fn change(
    urls: &[String],
    within: Duration,
    req: impl Fn(&str) -> reqwest::RequestBuilder,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        for u in urls {
            if let Ok(r) = req(u).timeout(Duration::from_secs(3)).send().await
                && r.status() == 200
            {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes controller `id` (1-based) from the voters; whether it is out of them (the API may
/// not answer 200 for a change that took effect: removing the leader ends its leadership
/// before it answers).
pub async fn remove(http: &reqwest::Client, urls: &[String], id: u64, within: Duration) -> bool {
    let answered = change(urls, within, |u| {
        http.delete(format!("{u}/v1/cluster/members/{id}"))
    })
    .await;
    answered || voters(http, urls).await.is_some_and(|v| !v.contains(&id))
}

/// Adds controller `id` back as a voter at `address`.
pub async fn add(
    http: &reqwest::Client,
    urls: &[String],
    id: u64,
    address: &str,
    within: Duration,
) -> bool {
    let body = serde_json::json!({"id": id, "address": address, "voter": true});
    let answered = change(urls, within, |u| {
        http.post(format!("{u}/v1/cluster/members")).json(&body)
    })
    .await;
    answered || voters(http, urls).await.is_some_and(|v| v.contains(&id))
}

/// The voters the leader's view lists, from the first controller that answers.
async fn voters(http: &reqwest::Client, urls: &[String]) -> Option<Vec<u64>> {
    for u in urls {
        if let Some(v) = super::logcheck::get(http, &format!("{u}/v1/cluster")).await
            && v["leader"].as_u64().is_some()
            && let Some(members) = v["members"].as_array()
        {
            return Some(
                members
                    .iter()
                    .filter(|m| m["voter"].as_bool() == Some(true))
                    .filter_map(|m| m["id"].as_u64())
                    .collect(),
            );
        }
    }
    None
}

/// Adds back every controller that is not a voter (ids 1..=n at `addrs`) until all are, or
/// `within` is over; whether all are.
pub async fn ensure_voters(
    http: &reqwest::Client,
    urls: &[String],
    addrs: &[String],
    within: Duration,
) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = voters(http, urls).await {
            let missing: Vec<u64> = (1..=addrs.len() as u64)
                .filter(|id| !v.contains(id))
                .collect();
            if missing.is_empty() {
                return true;
            }
            for id in missing {
                let left = deadline.saturating_duration_since(Instant::now());
                add(
                    http,
                    urls,
                    id,
                    &addrs[id as usize - 1],
                    left.min(Duration::from_secs(5)),
                )
                .await;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
