//! `tribune dev`: the whole system locally in one command — three controllers as separate
//! processes on 127.0.0.1, each with its own data dir, formed into a cluster.
//!
//! It speaks mTLS like a real cluster: a CA and certificates under `DATA_DIR/tls` (kept when
//! the data dir is reused), and a client config file (see `client::client_config_path`) that
//! lets the CLI find the cluster with no flags; it is removed on exit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use tribune_tls::ca;
use tribune_tls::{ClientTls, PeerIdentity};

use super::client::{ClientConfigFile, client_config_path};

/// The admin certificate `tribune dev` issues for the CLI.
const DEV_ADMIN: &str = "dev";

/// Creates the CA and certificates that are missing under `tls_dir`.
fn dev_pki(tls_dir: &Path, controllers: u16) -> anyhow::Result<ClientTls> {
    if !tls_dir.join(ca::CA_CERT).exists() {
        ca::init(tls_dir, ca::CA_DAYS_DEFAULT).context("creating the dev CA")?;
    }
    let mut ids: Vec<PeerIdentity> = (1..=u64::from(controllers))
        .map(|id| PeerIdentity::Controller { id })
        .collect();
    for host in super::dev_demo::hosts(true) {
        ids.push(PeerIdentity::Agent { host: host.into() });
    }
    ids.push(PeerIdentity::User {
        role: tribune_tls::UserRole::Admin,
        name: DEV_ADMIN.into(),
        tenant: None,
    });
    for id in &ids {
        tribune_testkit::tls::try_issue(tls_dir, id)
            .with_context(|| format!("issuing the dev certificate for {id}"))?;
    }
    let client = tribune_tls::TlsFiles::in_dir(tls_dir, &ids[ids.len() - 1].file_stem());
    Ok(ClientTls::from_files(&client)?)
}

/// The client config file this process wrote; removed on exit if it is still ours.
struct ClientConfigGuard {
    path: PathBuf,
    text: String,
}

impl Drop for ClientConfigGuard {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.text) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn write_client_config(file: &ClientConfigFile) -> anyhow::Result<Option<ClientConfigGuard>> {
    let Some(path) = client_config_path() else {
        return Ok(None);
    };
    let text = format!(
        "# Written by `tribune dev` (pid {}); removed when it stops. The CLI reads it when no\n# --endpoint is given.\n{}",
        std::process::id(),
        toml::to_string(file).context("encoding the client config")?
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    Ok(Some(ClientConfigGuard { path, text }))
}

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
    /// Start only the controllers: no agents, no demo policies or enclaves.
    #[arg(long)]
    pub no_demo: bool,
}

struct Children(Vec<(u64, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        // SIGTERM first so each controller shuts down cleanly.
        tribune_testkit::process::terminate(
            self.0.iter_mut().map(|(_, c)| c),
            Duration::from_secs(5),
        );
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
    let tls_dir = dir.join("tls");
    let client_tls = dev_pki(&tls_dir, n)?;
    let exe = std::env::current_exe().context("locating the tribune binary")?;
    let mut children = Children(Vec::new());
    for (id, addr) in &addrs {
        let data = dir.join(format!("controller-{id}"));
        std::fs::create_dir_all(&data)?;
        let log = std::fs::File::create(dir.join(format!("controller-{id}.log")))?;
        let mut cmd = Command::new(&exe);
        // Configured by these flags alone, whatever TRIBUNE_CONTROLLER_… the shell holds.
        super::env_vars::scrub(&mut cmd);
        cmd.arg("controller")
            .args(super::logging::child_args())
            .args(["--id", &id.to_string(), "--listen", addr, "--data-dir"])
            .arg(&data)
            .arg("--allow-sim-evidence")
            .arg("--tls-dir")
            .arg(&tls_dir);
        if n == 1 {
            cmd.arg("--init");
        }
        for (pid, paddr) in &addrs {
            if n > 1 {
                cmd.args(["--peer", &format!("{pid}={paddr}")]);
            }
        }
        let child = super::dev_demo::die_with_parent(&mut cmd)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting controller {id}"))?;
        children.0.push((*id, child));
    }

    let endpoint = addrs
        .iter()
        .map(|(_, a)| format!("https://{a}"))
        .collect::<Vec<_>>()
        .join(",");
    let rt = super::client::runtime()?;
    let leader = rt.block_on(wait_for_cluster(
        &addrs,
        &client_tls,
        &mut children,
        Duration::from_secs(30),
    ))?;
    println!(
        "Tribune dev cluster is up: {n} controllers, leader {leader}, in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "  API        https://{}  (gRPC and HTTP/JSON on each controller, mTLS)",
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
    let client_files = tribune_tls::TlsFiles::in_dir(&tls_dir, &format!("admin-{DEV_ADMIN}"));
    let config = ClientConfigFile {
        endpoint: endpoint.clone(),
        ca: Some(client_files.ca.clone()),
        cert: Some(client_files.cert.clone()),
        key: Some(client_files.key.clone()),
    };
    let _config_guard = write_client_config(&config)?;
    println!("  TLS        CA and certificates in {}", tls_dir.display());
    if let Some(g) = &_config_guard {
        println!(
            "  CLI config {}  (the CLI uses it when no --endpoint is given)",
            g.path.display()
        );
    }
    println!();
    println!("From another shell (or set these to skip the CLI config):");
    println!("  export TRIBUNE_ENDPOINT={endpoint}");
    println!("  export TRIBUNE_CA={}", client_files.ca.display());
    println!("  export TRIBUNE_CERT={}", client_files.cert.display());
    println!("  export TRIBUNE_KEY={}", client_files.key.display());
    println!("The CLI acts as the admin `{DEV_ADMIN}`. Other identities (docs/security.md):");
    println!(
        "  tribune ca issue operator alice --dir {}          # or auditor, admin",
        tls_dir.display()
    );
    println!(
        "  tribune ca issue tenant bob --tenant acme --dir {}",
        tls_dir.display()
    );
    println!("  tribune token create --name ci --role operator --ttl 24h");
    println!(
        "Web console: https://{}/ui/  (on every controller; docs/console.md)",
        addrs[0].1
    );
    println!("  log in with a token:  tribune token create --name console --role admin --ttl 8h");
    println!(
        "  (--role tenant --tenant demo shows one tenant's view); the browser must trust {}",
        client_files.ca.display()
    );
    println!("Try:");
    println!("  tribune cluster status");
    println!("  tribune policy put examples/policies/acme-batch.tribune");
    println!("  tribune policy ls");
    // A dev cluster is a new log each time: keep its pinned keys and tree heads beside it.
    println!(
        "  tribune log verify --state {}   # every signed tree head consistent",
        dir.join("log-state.json").display()
    );
    println!(
        "  curl -s --cacert {} --cert {} --key {} https://{}/v1/cluster",
        client_files.ca.display(),
        client_files.cert.display(),
        client_files.key.display(),
        addrs[0].1
    );
    // The demo: two agents and three enclaves whose stories play out within seconds.
    let api = format!("https://{}", addrs[0].1);
    let http = super::client::http_builder(Some(&client_tls))?
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut agents = None;
    if !args.no_demo {
        let root = tribune_testkit::is_root();
        let vm_skipped = super::dev_demo::vm_story_skipped(root);
        let vm = vm_skipped.is_none();
        rt.block_on(super::dev_demo::seed(&http, &api, vm))?;
        println!();
        let ctl: Vec<String> = addrs.iter().map(|(_, a)| a.clone()).collect();
        agents = Some(super::dev_demo::start_agents(
            &exe,
            &dir,
            &tls_dir,
            &ctl,
            !root,
            args.port_base,
            vm,
        )?);
        if vm {
            println!(
                "Demo: 4 host agents (h1, h2; QEMU: v1, v2) streaming to the controllers, 4 simulated-TEE enclaves:"
            );
        } else {
            println!(
                "Demo: 2 host agents (h1, h2) streaming to the controllers, 3 simulated-TEE enclaves:"
            );
        }
        println!("  web     (h1) well-behaved: stays within its limit");
        println!(
            "  miner   (h1) greedy: over its 200m limit → throttled at once, suspended after 5 s"
        );
        println!("  ledger  (h2) its evidence stops verifying after ~6 s → suspended");
        match &vm_skipped {
            None => println!(
                "  vm      (v1, half a core) a QEMU guest keeping v1 over 80 % busy → live-migrated to v2 by its policy"
            ),
            Some(why) => println!("  vm      skipped: {why}"),
        }
        for l in super::dev_demo::agent_logs(&dir, vm) {
            println!("  agent log  {}", l.display());
        }
        for (i, h) in super::dev_demo::hosts(vm).iter().enumerate() {
            let m = super::dev_demo::metrics_listen(args.port_base, i);
            if m != "off" {
                println!("  agent metrics  http://{m}/metrics  ({h})");
            }
        }
        if !root {
            println!();
            println!(
                "WARNING: not root — the agents run OBSERVE-ONLY: enclaves run and are measured and"
            );
            println!(
                "  every decision is made and logged, but nothing is confined (no cgroups, no tc, no"
            );
            println!(
                "  freezer without root). `tribune host ls` shows it. Run `sudo tribune dev` to enforce."
            );
        }
        println!("Decisions as the controllers log them:");
    }
    println!("Ctrl-C stops everything.");
    use std::io::Write;
    let _ = std::io::stdout().flush();

    rt.block_on(async {
        let mut next_entry = 0u64;
        let mut attested = std::collections::HashSet::new();
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
                    if agents.is_some() {
                        for e in super::dev_demo::entries_since(&http, &api, next_entry).await {
                            next_entry = next_entry.max(e.index + 1);
                            if let Some(line) = super::dev_demo::describe(&e, &mut attested) {
                                println!("{}", super::output::text(&line));
                            }
                        }
                        let _ = std::io::stdout().flush();
                    }
                }
            }
        }
    });
    println!("stopping…");
    drop(agents);
    drop(children);
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_cluster(
    addrs: &[(u64, String)],
    tls: &ClientTls,
    children: &mut Children,
    limit: Duration,
) -> anyhow::Result<u64> {
    let http = super::client::http_builder(Some(tls))?
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
            .get(format!("https://{}/v1/cluster", addrs[0].1))
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
            Err(e) => last = super::client::error_chain(&e),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "the cluster did not form within {}s ({last})",
        limit.as_secs()
    )
}
