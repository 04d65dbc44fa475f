//! A local 3-member etcd cluster (Debian's `etcd-server`, etcd 3.4) for the side-by-side writes
//! scenario, and its KV client over gRPC.
//!
//! Each member gets its own loopback ports and a temporary data dir; everything else is etcd's
//! default (fsync on every commit, heartbeat 100 ms, election timeout 1000 ms).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tribune_testkit::try_free_port as free_port;

/// Generated from `bench/proto/etcd/kv.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

pub type KvClient = pb::kv_client::KvClient<tonic::transport::Channel>;

/// The Debian package that carries etcd 3.4's server.
pub const APT_PACKAGE: &str = "etcd-server";

/// Finds the `etcd` binary: `explicit` if given, else on `PATH` or in `/usr/bin`. When it is
/// missing and `install` is set, installs [`APT_PACKAGE`] with one apt command (root only).
/// `Err` carries the reason the caller prints as `skipped etcd: <why>`.
pub fn locate(explicit: Option<&Path>, install: bool) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    if let Some(p) = on_path("etcd") {
        return Ok(p);
    }
    if !install {
        return Err(format!(
            "etcd not found (install it with `apt-get install -y --no-install-recommends {APT_PACKAGE}`)"
        ));
    }
    if !crate::is_root() {
        return Err(format!(
            "etcd not found and not root (install it with `sudo apt-get install -y --no-install-recommends {APT_PACKAGE}`)"
        ));
    }
    if on_path("apt-get").is_none() {
        return Err("etcd not found and no apt-get to install it with".into());
    }
    eprintln!("etcd not found: apt-get install -y --no-install-recommends {APT_PACKAGE} …");
    let status = Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            APT_PACKAGE,
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("running apt-get: {e}"))?;
    if !status.success() {
        return Err(format!("apt-get install {APT_PACKAGE} failed ({status})"));
    }
    on_path("etcd").ok_or_else(|| format!("{APT_PACKAGE} installed but no etcd on PATH"))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `etcd --version`'s first line, e.g. `etcd Version: 3.4.23`.
pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "etcd (unknown version)".into())
}

struct Member {
    client_url: String,
    child: Option<Child>,
}

/// Three `etcd` processes forming one cluster on loopback.
pub struct EtcdCluster {
    _dir: tempfile::TempDir,
    members: Vec<Member>,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                tribune_testkit::process::kill9(&mut c);
            }
        }
    }
}

impl EtcdCluster {
    pub fn start(binary: &Path, n: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tribune-etcd-").tempdir()?;
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
            .collect();
        let initial = initial.join(",");
        let token = format!("tribune-bench-{}", std::process::id());
        let mut members = Vec::with_capacity(n);
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new(binary)
                .args(["--name", &format!("e{i}"), "--data-dir"])
                .arg(dir.path().join(format!("e{i}")))
                .args([
                    "--listen-client-urls",
                    &client_url,
                    "--advertise-client-urls",
                    &client_url,
                    "--listen-peer-urls",
                    &peer_url,
                    "--initial-advertise-peer-urls",
                    &peer_url,
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    &token,
                    "--logger",
                    "zap",
                    "--log-level",
                    "error",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            members.push(Member {
                client_url,
                child: Some(child),
            });
        }
        Ok(Self { _dir: dir, members })
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// One KV client per member (a gRPC channel each, shared by all of a scenario's clients, as
    /// etcd's own client shares one connection).
    pub fn clients(&self) -> anyhow::Result<Vec<KvClient>> {
        self.endpoints()
            .into_iter()
            .map(|ep| {
                let ch = tonic::transport::Endpoint::from_shared(ep)?
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok(KvClient::new(ch))
            })
            .collect()
    }

    /// Waits until a write through every member is acknowledged.
    pub async fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        for (i, mut kv) in self.clients()?.into_iter().enumerate() {
            loop {
                for (j, m) in self.members.iter_mut().enumerate() {
                    if let Some(c) = m.child.as_mut()
                        && !matches!(c.try_wait(), Ok(None))
                    {
                        anyhow::bail!("etcd member e{j} exited during start-up ({})", m.client_url);
                    }
                }
                let req = pb::PutRequest {
                    key: format!("ready-{i}").into_bytes(),
                    value: b"1".to_vec(),
                    ..Default::default()
                };
                let put = tokio::time::timeout(Duration::from_secs(2), kv.put(req)).await;
                if matches!(put, Ok(Ok(_))) {
                    break;
                }
                if start.elapsed() > limit {
                    anyhow::bail!("etcd cluster not ready within {limit:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}
