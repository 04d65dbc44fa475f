//! A local cluster of real `tribune controller` processes for the scenarios that need one.
//!
//! The controllers run `--insecure` (plain text): the scenarios measure Raft and the write
//! path on loopback, and keep their numbers comparable with earlier runs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalCluster {
    binary: PathBuf,
    _dir: tempfile::TempDir,
    nodes: Vec<(u64, String, PathBuf, Option<Child>)>,
    extra: Vec<String>,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.3.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A loopback port free right now (the OS picks it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalCluster {
    pub fn start(binary: &Path, n: u64, extra: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("tribune-bench-")
            .tempdir()?;
        let mut nodes = Vec::new();
        for id in 1..=n {
            nodes.push((
                id,
                format!("127.0.0.1:{}", free_port()?),
                dir.path().join(format!("node-{id}")),
                None,
            ));
        }
        let mut c = Self {
            binary: binary.to_path_buf(),
            _dir: dir,
            nodes,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for id in 1..=n {
            c.spawn(id)?;
        }
        Ok(c)
    }

    fn spawn(&mut self, id: u64) -> anyhow::Result<()> {
        let peers: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|(i, a, _, _)| ["--peer".to_string(), format!("{i}={a}")])
            .collect();
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.0 == id)
            .ok_or_else(|| anyhow::anyhow!("no node {id}"))?;
        // TRIBUNE_BENCH_LOG_DIR=DIR keeps each controller's log (appended across restarts) for
        // looking into a run; by default logs are dropped.
        let log = match std::env::var_os("TRIBUNE_BENCH_LOG_DIR") {
            Some(dir) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(std::path::Path::new(&dir).join(format!("controller-{id}.log")))?,
            ),
            None => Stdio::null(),
        };
        let child = Command::new(&self.binary)
            .args([
                "controller",
                "--id",
                &id.to_string(),
                "--listen",
                &node.1,
                "--data-dir",
            ])
            .arg(&node.2)
            .arg("--insecure")
            .args(&peers)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        node.3 = Some(child);
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://{}", n.1))
            .collect()
    }

    /// (id, pid) of every running controller.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.nodes
            .iter()
            .filter_map(|n| n.3.as_ref().map(|c| (n.0, c.id())))
            .collect()
    }

    pub fn endpoints_except(&self, id: u64) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.0 != id)
            .map(|n| format!("http://{}", n.1))
            .collect()
    }

    pub fn kill9(&mut self, id: u64) -> anyhow::Result<()> {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.0 == id)
            && let Some(mut c) = n.3.take()
        {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn(id)
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
        while start.elapsed() < limit {
            for ep in self.endpoints() {
                if let Some(v) = cluster_view(http, &ep).await
                    && let Some(l) = agreed_leader(&v)
                {
                    return Ok(l);
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::bail!("no agreed leader within {limit:?}")
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
                        m.len() == self.nodes.len()
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
    let r = http
        .get(format!("{ep}/v1/cluster"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    r.json::<serde_json::Value>().await.ok()
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
