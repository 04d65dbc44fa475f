//! A local cluster of real `tribune controller` processes for the scenarios that need one.
//!
//! The controllers run `--insecure` (plain text): the scenarios measure Raft and the write
//! path on loopback, and keep their numbers comparable with earlier runs.

use std::path::Path;
use std::time::{Duration, Instant};

use tribune_testkit::{Logs, Options};

/// The controllers ([`tribune_testkit::LocalCluster`]) and what the scenarios wait for.
pub struct LocalCluster(tribune_testkit::LocalCluster);

impl LocalCluster {
    pub fn start(binary: &Path, n: u64, extra: &[&str]) -> anyhow::Result<Self> {
        Self::start_on(binary, n, extra, std::net::Ipv4Addr::LOCALHOST)
    }

    /// [`LocalCluster::start`] with the controllers listening on `ip`.
    pub fn start_on(
        binary: &Path,
        n: u64,
        extra: &[&str],
        ip: std::net::Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let mut opts = Options::new(binary);
        opts.prefix = "tribune-bench-".into();
        opts.extra = extra.iter().map(|s| s.to_string()).collect();
        // TRIBUNE_BENCH_LOG_DIR=DIR keeps each controller's log (appended across restarts) for
        // looking into a run; by default logs are dropped.
        opts.logs = match std::env::var_os("TRIBUNE_BENCH_LOG_DIR") {
            Some(dir) => Logs::Dir(dir.into()),
            None => Logs::Discard,
        };
        Ok(Self(tribune_testkit::LocalCluster::start_on(opts, n, ip)?))
    }

    /// [`LocalCluster::start`], then waits (up to 30 s each) for a leader every member agrees
    /// on and for every member to be healthy and caught up.
    pub async fn start_ready(
        binary: &Path,
        n: u64,
        extra: &[&str],
        http: &reqwest::Client,
    ) -> anyhow::Result<Self> {
        Self::start_ready_on(binary, n, extra, http, std::net::Ipv4Addr::LOCALHOST).await
    }

    /// [`LocalCluster::start_ready`] with the controllers listening on `ip`.
    pub async fn start_ready_on(
        binary: &Path,
        n: u64,
        extra: &[&str],
        http: &reqwest::Client,
        ip: std::net::Ipv4Addr,
    ) -> anyhow::Result<Self> {
        let c = Self::start_on(binary, n, extra, ip)?;
        c.wait_leader(http, Duration::from_secs(30)).await?;
        c.wait_all_healthy(http, Duration::from_secs(30)).await?;
        Ok(c)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.0.endpoint_list()
    }

    /// (id, pid) of every running controller.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.0.pids()
    }

    pub fn endpoints_except(&self, id: u64) -> Vec<String> {
        self.0
            .nodes
            .values()
            .filter(|n| n.id != id)
            .map(|n| format!("http://{}", n.addr))
            .collect()
    }

    /// `http://ADDR` of controller `id`.
    pub fn endpoints_of(&self, id: u64) -> Option<String> {
        self.0.nodes.get(&id).map(|n| format!("http://{}", n.addr))
    }

    /// Sends SIGTERM to controller `id` and returns at once ([`LocalCluster::reap`] waits).
    pub fn sigterm(&mut self, id: u64) -> anyhow::Result<()> {
        let n = self
            .0
            .nodes
            .get(&id)
            .ok_or_else(|| anyhow::anyhow!("no controller {id}"))?;
        if let Some(child) = &n.child {
            tribune_testkit::process::sigterm(child);
        }
        Ok(())
    }

    /// Waits up to `grace` for controller `id` (sent SIGTERM) to exit, then kills it; true if
    /// it exited by itself with success.
    pub async fn reap(&mut self, id: u64, grace: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.0.nodes.get_mut(&id).and_then(|n| n.child.take()) else {
            return Ok(true);
        };
        let stopped =
            tokio::task::spawn_blocking(move || tribune_testkit::process::stop(&mut child, grace))
                .await?;
        Ok(matches!(
            stopped,
            tribune_testkit::process::Stopped::Exited(Some(s)) if s.success()
        ))
    }

    pub fn kill9(&mut self, id: u64) -> anyhow::Result<()> {
        Ok(self.0.kill9(id)?)
    }

    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        Ok(self.0.restart(id)?)
    }

    /// Waits until the healthy members agree on one leader that itself reports being leader,
    /// and returns its id. (A single member's `leader` field may be stale right after a kill
    /// or a restart; killing a stale "leader" would time nothing.)
    pub async fn wait_leader(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<u64> {
        let start = Instant::now();
        let mut last = Vec::new();
        while start.elapsed() < limit {
            last.clear();
            for ep in self.endpoints() {
                let v = cluster_view(http, &ep).await;
                if let Some(l) = v.as_ref().and_then(agreed_leader) {
                    return Ok(l);
                }
                last.push(format!(
                    "{ep}: {}",
                    v.map_or("no answer".into(), |v| v.to_string())
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // What each member said last: the post-mortem of a cluster that never agreed.
        anyhow::bail!(
            "no agreed leader within {limit:?}; last seen:\n{}",
            last.join("\n")
        )
    }

    /// Waits until every member answers and has applied all but `max_lag` committed entries.
    pub async fn wait_caught_up(
        &self,
        http: &reqwest::Client,
        limit: Duration,
        max_lag: u64,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            for ep in self.endpoints() {
                if let Some(v) = cluster_view(http, &ep).await
                    && v["members"].as_array().is_some_and(|m| {
                        m.len() == self.0.nodes.len()
                            && m.iter().all(|m| {
                                m["healthy"] == true
                                    && m["lag"].as_u64().is_some_and(|l| l <= max_lag)
                            })
                    })
                {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("cluster not caught up within {limit:?}")
    }

    pub async fn wait_all_healthy(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<()> {
        self.wait_caught_up(http, limit, 0).await
    }
}

async fn cluster_view(http: &reqwest::Client, ep: &str) -> Option<serde_json::Value> {
    fetch_cluster(http, ep).await
}

/// `GET {ep}/v1/cluster`, decoded as `T`; `None` when it does not answer within 2 s.
pub(crate) async fn fetch_cluster<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    ep: &str,
) -> Option<T> {
    let r = http
        .get(format!("{ep}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json::<T>().await.ok()
}

/// The leader every answering member names, if that member says it leads.
fn agreed_leader(v: &serde_json::Value) -> Option<u64> {
    let members = v["members"].as_array()?;
    let statuses: Vec<&serde_json::Value> = members
        .iter()
        .filter(|m| m["healthy"] == true)
        .map(|m| &m["status"])
        .collect();
    let leader = statuses.iter().find(|s| s["state"] == "leader")?["id"].as_u64()?;
    statuses
        .iter()
        .all(|s| s["leader"].as_u64() == Some(leader))
        .then_some(leader)
}
