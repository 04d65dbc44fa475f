//! `tribune dev`: the whole system locally in one command — three controllers as separate
//! processes on 127.0.0.1, each with its own data dir, formed into a cluster.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args, Debug)]
pub struct DevArgs {
    /// Where to keep the cluster's data and logs (default: a fresh temporary directory,
    /// removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Controllers listen on PORT_BASE+1, PORT_BASE+2, …
    #[arg(long, default_value_t = 7400)]
    pub port_base: u16,
    /// Number of controllers (1, 3 or 5).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=7))]
    pub controllers: u16,
}

struct Children(Vec<(u64, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            // SIGTERM first so each controller shuts down cleanly.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, c) in &mut self.0 {
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (dir, _temp) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("tribune-dev-")
                .tempdir()
                .context("creating a temp dir")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let n = args.controllers;
    if n.is_multiple_of(2) {
        bail!(
            "--controllers must be odd (1, 3, 5 or 7): an even count tolerates no more failures than one fewer"
        );
    }
    let addrs: Vec<(u64, String)> = (1..=n)
        .map(|i| {
            let port = args
                .port_base
                .checked_add(i)
                .context("--port-base too high")?;
            Ok((u64::from(i), format!("127.0.0.1:{port}")))
        })
        .collect::<anyhow::Result<_>>()?;
    for (_, a) in &addrs {
        if std::net::TcpListener::bind(a).is_err() {
            bail!(
                "{a} is in use: is another `tribune dev` running? Pick other ports with --port-base"
            );
        }
    }
    let exe = std::env::current_exe().context("locating the tribune binary")?;
    let mut children = Children(Vec::new());
    for (id, addr) in &addrs {
        let data = dir.join(format!("controller-{id}"));
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join(format!("controller-{id}.log")))?;
        let mut cmd = Command::new(&exe);
        cmd.arg("controller")
            .args(["--id", &id.to_string(), "--listen", addr, "--data-dir"])
            .arg(&data);
        if n == 1 {
            cmd.arg("--init");
        }
        for (pid, paddr) in &addrs {
            if n > 1 {
                cmd.args(["--peer", &format!("{pid}={paddr}")]);
            }
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting controller {id}"))?;
        children.0.push((*id, child));
    }

    let endpoint = addrs
        .iter()
        .map(|(_, a)| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let rt = super::client::runtime()?;
    let leader = rt.block_on(wait_for_cluster(
        &addrs,
        &mut children,
        Duration::from_secs(30),
    ))?;
    println!(
        "Tribune dev cluster is up: {n} controllers, leader {leader}, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  API        http://{}  (gRPC and HTTP/JSON on each controller)",
        addrs[0].1
    );
    for (id, a) in &addrs {
        println!(
            "  controller {id}  {a}  log: {}",
            dir.join(format!("controller-{id}.log")).display()
        );
    }
    println!(
        "  data       {}{}",
        dir.display(),
        if args.data_dir.is_none() {
            " (removed on exit)"
        } else {
            ""
        }
    );
    println!();
    println!("Try:");
    if args.port_base != 7400 {
        println!("  export TRIBUNE_ENDPOINT={endpoint}");
    }
    println!("  tribune cluster status");
    println!("  tribune policy put examples/policies/acme-batch.tribune");
    println!("  tribune policy ls");
    // A dev cluster is a new log each time: keep its pinned keys and tree heads beside it.
    println!(
        "  tribune log verify --state {}   # every signed tree head consistent",
        dir.join("log-state.json").display()
    );
    println!("  curl -s http://{}/v1/cluster", addrs[0].1);
    println!("Ctrl-C stops everything.");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    rt.block_on(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let stop = super::controller::shutdown_signal();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => {
                    for (id, c) in &mut children.0 {
                        if let Ok(Some(status)) = c.try_wait() {
                            eprintln!("controller {id} exited ({status}); see {}", dir.join(format!("controller-{id}.log")).display());
                        }
                    }
                    children.0.retain_mut(|(_, c)| matches!(c.try_wait(), Ok(None)));
                    if children.0.is_empty() {
                        break;
                    }
                }
            }
        }
    });
    println!("stopping…");
    drop(children);
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_cluster(
    addrs: &[(u64, String)],
    children: &mut Children,
    limit: Duration,
) -> anyhow::Result<u64> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        for (id, c) in &mut children.0 {
            if let Ok(Some(status)) = c.try_wait() {
                bail!("controller {id} exited during start-up ({status}); see its log");
            }
        }
        match http
            .get(format!("http://{}/v1/cluster", addrs[0].1))
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                let healthy = v["members"]
                    .as_array()
                    .map_or(0, |m| m.iter().filter(|m| m["healthy"] == true).count());
                match v["leader"].as_u64() {
                    Some(l) if healthy == addrs.len() => return Ok(l),
                    _ => {
                        last = format!("{healthy}/{} healthy, leader {}", addrs.len(), v["leader"])
                    }
                }
            }
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the cluster did not form within {}s ({last})",
        limit.as_secs()
    )
}
