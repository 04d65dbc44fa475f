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

fn free_port() -> anyhow::Result<u16> {
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
            .stderr(Stdio::null())
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

    /// (node id, process id) of every running controller.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        self.nodes
            .iter()
            .filter_map(|n| n.3.as_ref().map(|c| (n.0, c.id())))
            .collect()
    }

    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        self.spawn(id)
    }

    pub async fn wait_leader(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<u64> {
        let start = Instant::now();
        while start.elapsed() < limit {
            for ep in self.endpoints() {
                if let Ok(r) = http.get(format!("{ep}/v1/cluster")).send().await
                    && let Ok(v) = r.json::<serde_json::Value>().await
                    && let Some(l) = v["leader"].as_u64()
                {
                    return Ok(l);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("no leader within {limit:?}")
    }

    pub async fn wait_all_healthy(
        &self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(ep) = self.endpoints().first()
                && let Ok(r) = http.get(format!("{ep}/v1/cluster")).send().await
                && let Ok(v) = r.json::<serde_json::Value>().await
                && v["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().all(|m| m["healthy"] == true && m["lag"] == 0))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("cluster not healthy within {limit:?}")
    }
}
