//! `tribune controller`: runs one controller until SIGINT/SIGTERM.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use tribune_controller::ControllerError;
use tribune_controller::node::ControllerConfig;
use tribune_controller::validate::PolicyValidator;

use super::tls_args::TlsArgs;

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    /// TOML file with the same settings as the flags (flags win).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This controller's id (unique in the cluster, > 0).
    #[arg(long)]
    pub id: Option<u64>,
    /// Address to listen on for gRPC and HTTP.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Address others reach this controller at (default: --listen).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Initial cluster member as ID=HOST:PORT; repeat for each. The lowest id initialises.
    #[arg(long = "peer", value_parser = parse_peer)]
    pub peers: Vec<(u64, String)>,
    /// Directory for the Raft log, snapshots and state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initialise a one-node cluster (grow it with `tribune cluster add`).
    #[arg(long)]
    pub init: bool,
    /// Leader heartbeat interval in milliseconds.
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout in milliseconds (the maximum is twice this).
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Take a snapshot after this many log entries.
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot.
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// Accept simulated-TEE evidence from agents (development clusters only).
    #[arg(long)]
    pub allow_sim_evidence: bool,
    /// Start over from the other controllers: move DATA_DIR/raft aside (never deleted) and join
    /// with an empty log; the leader sends the data. For a controller whose data is corrupt or
    /// disagrees with the cluster. Needs --peer for at least one running controller. One-shot:
    /// do not leave it in a service definition.
    #[arg(long)]
    pub resync_from_peers: bool,
    /// Replace this controller's log signing key: move DATA_DIR/log-signing.key aside and create
    /// a new one, registered at start (the old key stays registered). One-shot.
    #[arg(long)]
    pub rotate_log_key: bool,
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Exit status of a controller that refuses to start on data it cannot vouch for (a corrupt
/// data file or log signing key): restarting it will not help, so service managers can be told
/// not to (`RestartPreventExitStatus=3`).
pub const EXIT_INTEGRITY: u8 = 3;

fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected ID=HOST:PORT, got {s:?}"))?;
    let id: u64 = id
        .parse()
        .map_err(|_| format!("peer id {id:?} is not a number"))?;
    if !addr.contains(':') {
        return Err(format!("peer address {addr:?} needs a port (HOST:PORT)"));
    }
    Ok((id, addr.to_string()))
}

impl ControllerArgs {
    pub fn resolve(&self) -> anyhow::Result<ControllerConfig> {
        let mut cfg: Option<ControllerConfig> = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Some(toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?)
            }
            None => None,
        };
        let id = self
            .id
            .or(cfg.as_ref().map(|c| c.id))
            .context("--id is required (or `id` in --config)")?;
        if id == 0 {
            bail!("--id must be greater than 0");
        }
        let listen = self
            .listen
            .or(cfg.as_ref().map(|c| c.listen))
            .context("--listen is required (or `listen` in --config)")?;
        let data_dir = self
            .data_dir
            .clone()
            .or(cfg.as_ref().map(|c| c.data_dir.clone()))
            .context("--data-dir is required (or `data_dir` in --config)")?;
        let mut c = cfg
            .take()
            .unwrap_or_else(|| ControllerConfig::new(id, listen, data_dir.clone()));
        c.id = id;
        c.listen = listen;
        c.data_dir = data_dir;
        if self.advertise.is_some() {
            c.advertise = self.advertise.clone();
        }
        if !self.peers.is_empty() {
            c.peers = self.peers.iter().cloned().collect::<BTreeMap<_, _>>();
        }
        c.init |= self.init;
        if let Some(v) = self.heartbeat_ms {
            c.heartbeat_ms = v;
        }
        if let Some(v) = self.election_timeout_ms {
            c.election_timeout_ms = v;
        }
        if let Some(v) = self.snapshot_every {
            c.snapshot_every = v;
        }
        if let Some(v) = self.keep_logs {
            c.keep_logs = v;
        }
        c.allow_sim_evidence |= self.allow_sim_evidence;
        let tls = self.tls.files(&format!("controller-{id}"));
        if tls.is_some() {
            (c.tls, c.insecure) = (tls, false);
        } else if self.tls.insecure {
            (c.tls, c.insecure) = (None, true);
        }
        Ok(c)
    }
}

/// The policy validator controllers use: the policy language's checker.
pub fn validator() -> Arc<dyn PolicyValidator> {
    Arc::new(tribune_controller::validate::PolicyLanguage)
}

pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    super::init_tracing();
    let result = super::client::runtime()?.block_on(serve(args, config));
    match result {
        Err(e) => match e.downcast_ref::<ControllerError>() {
            Some(ControllerError::Integrity(msg)) => {
                eprintln!("error: refusing to start: {msg}");
                Ok(ExitCode::from(EXIT_INTEGRITY))
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

async fn serve(args: ControllerArgs, config: ControllerConfig) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    if args.rotate_log_key {
        let r = tribune_controller::log_key::rotate(&config.data_dir)?;
        tracing::warn!(key_id = %r.key_id, old = ?r.old, "log signing key rotated");
    }
    if args.resync_from_peers {
        let r = tribune_controller::integrity::resync::prepare(&config).await?;
        tracing::warn!(
            moved_to = ?r.moved_to,
            peers = ?r.peers,
            term = r.term,
            "re-syncing from the other controllers: the old data was moved aside, not deleted; the leader sends the log or a snapshot"
        );
    }
    let controller = tribune_controller::Controller::open(config.clone(), validator()).await?;
    // A re-synced controller joins the cluster that exists: it never initialises one.
    if !args.resync_from_peers {
        controller.bootstrap().await?;
    }
    tracing::info!(id = config.id, addr = %config.advertised(), data_dir = %config.data_dir.display(), "controller serving");
    tribune_controller::server::serve(listener, controller.clone(), shutdown_signal()).await?;
    let _ = controller.raft.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_flags_override_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, include_str!("../../../deploy/controller.toml")).expect("write");
        let args = ControllerArgs {
            config: Some(path),
            id: None,
            listen: None,
            advertise: None,
            peers: vec![],
            data_dir: None,
            init: false,
            heartbeat_ms: Some(75),
            election_timeout_ms: None,
            snapshot_every: None,
            keep_logs: None,
            allow_sim_evidence: false,
            resync_from_peers: false,
            rotate_log_key: false,
            tls: TlsArgs::default(),
        };
        let c = args.resolve().expect("resolves");
        assert_eq!((c.id, c.heartbeat_ms, c.election_timeout_ms), (1, 75, 250));
        let tls = c.tls.as_ref().expect("the example uses TLS");
        assert_eq!(tls.cert, PathBuf::from("/etc/tribune/tls/controller-1.pem"));
        assert!(!c.insecure);

        let flags = ControllerArgs {
            tls: TlsArgs {
                tls_dir: Some(PathBuf::from("/srv/ca")),
                ..TlsArgs::default()
            },
            ..args.clone()
        };
        let c = flags.resolve().expect("resolves");
        assert_eq!(
            c.tls,
            Some(tribune_controller::tls::TlsFiles::in_dir(
                std::path::Path::new("/srv/ca"),
                "controller-1"
            ))
        );
        let insecure = ControllerArgs {
            tls: TlsArgs {
                insecure: true,
                ..TlsArgs::default()
            },
            ..args
        };
        let c = insecure.resolve().expect("resolves");
        assert!(c.tls.is_none() && c.insecure);
        assert_eq!(c.peers.get(&3).map(String::as_str), Some("10.0.0.13:7401"));
        assert_eq!(c.advertised(), "10.0.0.11:7401");
    }

    #[test]
    fn peers_must_be_id_equals_address() {
        assert_eq!(
            parse_peer("2=127.0.0.1:7402"),
            Ok((2, "127.0.0.1:7402".to_string()))
        );
        assert!(parse_peer("127.0.0.1:7402").is_err());
        assert!(parse_peer("x=127.0.0.1:7402").is_err());
        assert!(parse_peer("2=localhost").is_err());
    }
}
