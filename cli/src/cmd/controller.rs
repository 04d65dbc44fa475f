//! `tribune controller`: runs one controller until SIGINT/SIGTERM.
//!
//! Settings: flag > `TRIBUNE_CONTROLLER_…` variable ([`super::env_vars`]) > `--config` file >
//! default. The file's keys are `ControllerConfig`'s (deploy/controller.toml); one it does not
//! know is refused, naming the key and the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use clap::builder::BoolishValueParser;
use tribune_controller::ControllerError;
use tribune_controller::node::ControllerConfig;
use tribune_controller::server::Stopped;
use tribune_controller::validate::PolicyValidator;

use super::tls_args::TlsArgs;

#[derive(Args, Debug, Clone)]
pub struct ControllerArgs {
    /// TOML file with the same settings as the flags (deploy/controller.toml); flags and
    /// variables win over it. Unknown keys are refused.
    #[arg(long, value_name = "FILE")]
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
    /// Initial cluster member as ID=HOST:PORT; repeat for each (or separate them with commas).
    /// The lowest id initialises.
    #[arg(long = "peer", value_parser = parse_peer, value_delimiter = ',')]
    pub peers: Vec<(u64, String)>,
    /// Directory for the Raft log, snapshots and state.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Initialise a one-node cluster (grow it with `tribune cluster add`).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub init: Option<bool>,
    /// Leader heartbeat interval in milliseconds [default: 50].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Silence from the leader, in milliseconds, after which a follower stands for election
    /// (after a pre-vote; plus one heartbeat per rank and a jitter) [default: 150].
    #[arg(long)]
    pub election_timeout_ms: Option<u64>,
    /// Take a snapshot after this many log entries [default: 5000].
    #[arg(long)]
    pub snapshot_every: Option<u64>,
    /// Log entries kept behind a snapshot [default: 1000].
    #[arg(long)]
    pub keep_logs: Option<u64>,
    /// How long a write or a linearizable read waits for a leader before answering 503, in
    /// milliseconds [default: 3000].
    #[arg(long)]
    pub request_timeout_ms: Option<u64>,
    /// The log's origin in C2SP checkpoints (`tribune log checkpoint`) and the key name of their
    /// signatures: a schema-less URL naming this cluster's log, the same on every controller
    /// [default: tribune.invalid/log].
    #[arg(long)]
    pub log_origin: Option<String>,
    /// Accept simulated-TEE evidence from agents (development clusters only).
    #[arg(
        long,
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = BoolishValueParser::new()
    )]
    pub allow_sim_evidence: Option<bool>,
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

/// Exit status of a controller whose Raft stopped on its own while serving (a storage error:
/// the disk filled up, a write failed). It exits instead of answering as a zombie; a restart
/// (systemd's `Restart=on-failure`) brings it back once the cause is fixed, and it catches up
/// from its log and the leader.
pub const EXIT_RAFT_FAILED: u8 = 4;

/// How long Raft gets to stop after the server did.
const RAFT_SHUTDOWN_MAX: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The configuration: these flags (and variables) over the `--config` file over the
    /// defaults.
    pub fn resolve(&self) -> anyhow::Result<ControllerConfig> {
        let file = self.config.as_deref().map(read_config_file).transpose()?;
        let id = match (self.id, &file, &self.config) {
            (Some(id), _, _) => id,
            (None, Some(table), Some(path)) if table.contains_key("id") => table["id"]
                .as_integer()
                .and_then(|i| u64::try_from(i).ok())
                .with_context(|| {
                    format!(
                        "{}: id = {} is not a controller id (a number > 0)",
                        path.display(),
                        table["id"]
                    )
                })?,
            _ => bail!("--id is required (or `id` in --config, or TRIBUNE_CONTROLLER_ID)"),
        };
        if id == 0 {
            bail!("--id must be greater than 0");
        }
        let mut c = match (file, &self.config) {
            (Some(mut table), Some(path)) => {
                // The keys the file may leave to the flags; then the file is read whole.
                table.insert(
                    "id".into(),
                    toml::Value::Integer(i64::try_from(id).context("--id is too large")?),
                );
                if let Some(l) = self.listen {
                    table.insert("listen".into(), toml::Value::String(l.to_string()));
                }
                if let Some(d) = &self.data_dir {
                    table.insert("data_dir".into(), toml::Value::String(path_str(d)?));
                }
                require(&table, "listen")?;
                require(&table, "data_dir")?;
                // A table's keys are strings: the peer ids are read here, the rest by serde.
                let peers = table.remove("peers");
                // Read before the process's subscriber is installed (`logging::LogFile`).
                table.remove("log");
                let mut c = table.try_into::<ControllerConfig>().map_err(|e| {
                    anyhow::anyhow!("{}: not a valid controller config: {e}", path.display())
                })?;
                c.peers = peers
                    .map(|p| read_peers(&p, path))
                    .transpose()?
                    .unwrap_or_default();
                c
            }
            _ => {
                let listen = self.listen.context(
                    "--listen is required (or `listen` in --config, or TRIBUNE_CONTROLLER_LISTEN)",
                )?;
                let data_dir = self.data_dir.clone().context(
                    "--data-dir is required (or `data_dir` in --config, or TRIBUNE_CONTROLLER_DATA_DIR)",
                )?;
                ControllerConfig::new(id, listen, data_dir)
            }
        };
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if self.advertise.is_some() {
            c.advertise = self.advertise.clone();
        }
        if !self.peers.is_empty() {
            c.peers = self.peers.iter().cloned().collect::<BTreeMap<_, _>>();
        }
        if let Some(v) = self.init {
            c.init = v;
        }
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
        if let Some(v) = self.request_timeout_ms {
            c.request_timeout_ms = v;
        }
        if let Some(v) = &self.log_origin {
            c.log_origin = v.clone();
        }
        if let Some(v) = self.allow_sim_evidence {
            c.allow_sim_evidence = v;
        }
        // TLS files from flags or variables replace the file's; `--insecure[=BOOL]` overrides
        // the file's `insecure` (and, when on, drops its TLS files).
        if let Some(files) = self.tls.files(&format!("controller-{id}")) {
            (c.tls, c.insecure) = (Some(files), false);
        } else if let Some(insecure) = self.tls.insecure {
            c.insecure = insecure;
            if insecure {
                c.tls = None;
            }
        }
        Ok(c)
    }
}

/// The `--config` file as a TOML table (a syntax error names the file, line and column).
fn read_config_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.parse::<toml::Table>()
        .with_context(|| format!("parsing {}", path.display()))
}

/// The file's `[peers]` table: `ID = "HOST:PORT"`.
fn read_peers(peers: &toml::Value, path: &Path) -> anyhow::Result<BTreeMap<u64, String>> {
    let bad = |what: String| anyhow::anyhow!("{}: [peers]: {what}", path.display());
    let table = peers
        .as_table()
        .ok_or_else(|| bad("expected a table of ID = \"HOST:PORT\"".into()))?;
    table
        .iter()
        .map(|(id, addr)| {
            let addr = addr
                .as_str()
                .ok_or_else(|| bad(format!("{id} = {addr} is not an address string")))?;
            parse_peer(&format!("{id}={addr}")).map_err(bad)
        })
        .collect()
}

fn require(table: &toml::Table, key: &str) -> anyhow::Result<()> {
    if table.contains_key(key) {
        return Ok(());
    }
    let flag = key.replace('_', "-");
    let var = super::env_vars::name(super::env_vars::CONTROLLER_PREFIX, &flag);
    bail!("--{flag} is required (or `{key}` in --config, or {var})")
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

/// The policy validator controllers use: the policy language's checker.
pub fn validator() -> Arc<dyn PolicyValidator> {
    Arc::new(tribune_controller::validate::PolicyLanguage)
}

pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
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
    // First: a SIGHUP during start-up must not end the process (its default action).
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    tokio::spawn(forward_sighup(reload_tx));
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
    let ready = tokio::spawn(notify_when_ready(controller.clone()));
    // On SIGTERM a leader first hands its leadership over (bounded: two election timeouts),
    // then stops serving: the cluster is not left leaderless for an election timeout.
    let handing = controller.clone();
    let shutdown = async move {
        shutdown_signal().await;
        handing.hand_over().await;
    };
    let stopped = tribune_controller::server::serve_reloadable(
        listener,
        controller.clone(),
        shutdown,
        reloads,
    )
    .await?;
    ready.abort();
    super::service::notify(&[sd_notify::NotifyState::Stopping]);
    if tokio::time::timeout(RAFT_SHUTDOWN_MAX, controller.raft.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("raft did not stop within {RAFT_SHUTDOWN_MAX:?}; exiting anyway");
    }
    match stopped {
        Stopped::Signal => {
            tracing::info!(id = config.id, "controller stopped");
            Ok(ExitCode::SUCCESS)
        }
        Stopped::RaftFailed(why) => {
            eprintln!(
                "error: raft stopped: {why}\n  this controller can no longer take part in the cluster and exits (status {EXIT_RAFT_FAILED}); fix the cause (e.g. free space in {}) and restart it: it catches up from its log and the leader",
                config.data_dir.display()
            );
            Ok(ExitCode::from(EXIT_RAFT_FAILED))
        }
    }
}

/// Tells systemd (`Type=notify`) the controller is ready once it has joined its cluster and
/// applied the log as far as the leader had committed: its data vouched for, a leader known,
/// and a read barrier passed. Without `NOTIFY_SOCKET` (not under systemd) this does nothing.
async fn notify_when_ready(controller: Arc<tribune_controller::Controller>) {
    loop {
        let ready = controller.integrity.ready().is_ok() && controller.ready().is_ok();
        if ready && controller.read_barrier().await.is_ok() {
            tracing::info!(id = controller.id, "ready: joined and applied the log");
            super::service::notify(&[sd_notify::NotifyState::Ready]);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Each SIGHUP: reload the TLS certificates (`server::serve_reloadable`); `systemctl reload`.
async fn forward_sighup(reload: tokio::sync::mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP cannot be caught: certificates reload only on restart");
                return;
            }
        };
        while hup.recv().await.is_some() {
            super::service::notify(&[sd_notify::NotifyState::Reloading]);
            // A reload already queued covers this one too.
            let _ = reload.try_send(());
            super::service::notify(&[sd_notify::NotifyState::Ready]);
        }
    }
    #[cfg(not(unix))]
    drop(reload);
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
    use crate::cmd::test_env;

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
            init: None,
            heartbeat_ms: Some(75),
            election_timeout_ms: None,
            snapshot_every: None,
            keep_logs: None,
            request_timeout_ms: None,
            log_origin: None,
            allow_sim_evidence: None,
            resync_from_peers: false,
            rotate_log_key: false,
            tls: TlsArgs::default(),
        };
        let c = args.resolve().expect("resolves");
        assert_eq!((c.id, c.heartbeat_ms, c.election_timeout_ms), (1, 75, 150));
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
                insecure: Some(true),
                ..TlsArgs::default()
            },
            ..args
        };
        let c = insecure.resolve().expect("resolves");
        assert!(c.tls.is_none() && c.insecure);
        assert_eq!(c.peers.get(&3).map(String::as_str), Some("10.0.0.13:7401"));
        assert_eq!(c.advertised(), "10.0.0.11:7401");
    }

    /// `tribune ARGS` parsed as `main` parses it (variables included), resolved.
    fn resolved(args: &[&str]) -> anyhow::Result<ControllerConfig> {
        let mut argv = vec!["tribune", "controller"];
        argv.extend_from_slice(args);
        let argv: Vec<std::ffi::OsString> = argv.into_iter().map(Into::into).collect();
        let cli = crate::parse(&argv).map_err(|e| anyhow::anyhow!("{e}"))?;
        let crate::Command::Controller(a) = cli.command else {
            panic!("not a controller command")
        };
        a.resolve()
    }

    /// Flag > variable > file > default, for numbers, addresses, lists and on/off settings.
    #[test]
    fn flags_win_over_variables_which_win_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "id = 2\nlisten = \"127.0.0.1:7402\"\ndata_dir = \"/srv/file\"\nheartbeat_ms = 60\ninit = true\n",
        )
        .expect("write");
        let file = file.display().to_string();
        {
            let _env = test_env::vars(&[]);
            let c = resolved(&["--config", &file]).expect("file");
            assert_eq!(
                (c.id, c.heartbeat_ms, c.keep_logs),
                (2, 60, 1000),
                "file, default"
            );
            assert!(c.init);
            let c = resolved(&["--id", "1", "--listen", "127.0.0.1:1", "--data-dir", "/d"])
                .expect("flags only");
            assert_eq!((c.heartbeat_ms, c.init), (50, false), "the defaults");
        }
        {
            let _env = test_env::vars(&[
                ("TRIBUNE_CONTROLLER_HEARTBEAT_MS", "70"),
                ("TRIBUNE_CONTROLLER_DATA_DIR", "/srv/env"),
                ("TRIBUNE_CONTROLLER_INIT", "false"),
                ("TRIBUNE_CONTROLLER_PEER", "1=10.0.0.1:7401,2=10.0.0.2:7401"),
                ("TRIBUNE_CONTROLLER_ALLOW_SIM_EVIDENCE", "1"),
            ]);
            let c = resolved(&["--config", &file]).expect("env");
            assert_eq!(c.heartbeat_ms, 70);
            assert_eq!(c.data_dir, PathBuf::from("/srv/env"));
            assert!(!c.init, "a variable turns off what the file turned on");
            assert_eq!(c.peers.len(), 2);
            assert!(c.allow_sim_evidence);
            let c =
                resolved(&["--config", &file, "--heartbeat-ms", "80", "--init"]).expect("flags");
            assert_eq!(c.heartbeat_ms, 80);
            assert!(c.init);
        }
        {
            // Without a file: the required settings from variables alone.
            let _env = test_env::vars(&[
                ("TRIBUNE_CONTROLLER_ID", "3"),
                ("TRIBUNE_CONTROLLER_LISTEN", "127.0.0.1:7403"),
                ("TRIBUNE_CONTROLLER_DATA_DIR", "/srv/3"),
                ("TRIBUNE_CONTROLLER_INSECURE", "true"),
            ]);
            let c = resolved(&[]).expect("env only");
            assert_eq!((c.id, c.listen.port()), (3, 7403));
            assert!(c.insecure && c.tls.is_none());
        }
        {
            // The variable names the config file too; the file may leave id to the flags.
            let partial = dir.path().join("p.toml");
            std::fs::write(&partial, "listen = \"127.0.0.1:7404\"\ndata_dir = \"/p\"\n")
                .expect("write");
            let partial = partial.display().to_string();
            let _env = test_env::vars(&[("TRIBUNE_CONTROLLER_CONFIG", partial.as_str())]);
            let e = resolved(&[]).expect_err("no id");
            assert!(e.to_string().contains("--id is required"), "{e}");
            assert_eq!(
                resolved(&["--id", "4"])
                    .expect("id from the flag")
                    .listen
                    .port(),
                7404
            );
        }
    }

    /// The defaults `--help` states are the controller's.
    #[test]
    fn the_documented_defaults_are_the_controllers() {
        let mut cmd = crate::command();
        let help = cmd
            .find_subcommand_mut("controller")
            .expect("controller")
            .render_long_help()
            .to_string();
        let c = ControllerConfig::new(1, "127.0.0.1:1".parse().expect("addr"), "/d".into());
        for (flag, default) in [
            ("--heartbeat-ms", c.heartbeat_ms),
            ("--election-timeout-ms", c.election_timeout_ms),
            ("--snapshot-every", c.snapshot_every),
            ("--keep-logs", c.keep_logs),
            ("--request-timeout-ms", c.request_timeout_ms),
        ] {
            let at = help.find(flag).expect(flag);
            let next = help[at..].find("[env:").expect("env") + at;
            assert!(
                help[at..next].contains(&format!("[default: {default}]")),
                "{flag}: {}",
                &help[at..next]
            );
        }
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_key_and_the_file() {
        let _env = test_env::vars(&[]);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "id = 1\nlisten = \"127.0.0.1:1\"\ndata_dir = \"/d\"\nheartbeat = 5\n",
        )
        .expect("write");
        let file = file.display().to_string();
        let e = format!(
            "{:#}",
            resolved(&["--config", &file]).expect_err("unknown key")
        );
        assert!(e.contains("heartbeat") && e.contains(&file), "{e}");
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
