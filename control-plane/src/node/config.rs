//! A controller's start-up configuration (the flags and `deploy/controller.toml` keys), its
//! defaults, the transport it asks for and the Raft configuration derived from it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use openraft::{Config, SnapshotPolicy};
use serde::{Deserialize, Serialize};

use crate::error::ControllerError;
use crate::raft::NodeId;
use crate::tls::{ControllerTls, TlsFiles};

/// Start-up configuration of one controller.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerConfig {
    pub id: NodeId,
    /// Address to bind (gRPC and HTTP share it).
    pub listen: SocketAddr,
    /// Address the other controllers and clients use; defaults to `listen`.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Initial cluster: id → address, this node included or not. The lowest id initialises.
    #[serde(default)]
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// Initialise a single-node cluster even without peers.
    #[serde(default)]
    pub init: bool,
    #[serde(default = "defaults::heartbeat_ms")]
    pub heartbeat_ms: u64,
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: u64,
    /// Build a snapshot after this many log entries.
    #[serde(default = "defaults::snapshot_every")]
    pub snapshot_every: u64,
    /// Entries kept in the log behind the snapshot (for followers slightly behind).
    #[serde(default = "defaults::keep_logs")]
    pub keep_logs: u64,
    /// How long a write or a linearizable read may wait for a leader before giving up with 503.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Accept simulated-TEE evidence from agents (`tribune dev`; never in production).
    #[serde(default)]
    pub allow_sim_evidence: bool,
    /// mTLS on every link: the CA bundle, this controller's certificate and its key.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
    /// Run without TLS (plain-text gRPC and HTTP). Required, explicitly, when `tls` is absent.
    #[serde(default)]
    pub insecure: bool,
    /// The log's origin line in C2SP checkpoints (`GET /v1/log/checkpoint`) and the key name
    /// of its signatures: a schema-less URL naming this cluster's log, the same on every
    /// controller of the cluster.
    #[serde(default = "defaults::log_origin")]
    pub log_origin: String,
    /// Live migration of QEMU enclaves (`[migration]`; `crate::live`).
    #[serde(default)]
    pub migration: crate::live::LiveConfig,
}

/// Ten minutes: a longer election timeout is a mistake (a dead leader would go unnoticed).
const MAX_ELECTION_TIMEOUT_MS: u64 = 600_000;

mod defaults {
    /// Names no real log: a cluster that publishes checkpoints to witnesses sets its own.
    pub fn log_origin() -> String {
        "tribune.invalid/log".into()
    }

    pub fn heartbeat_ms() -> u64 {
        50
    }
    pub fn election_timeout_ms() -> u64 {
        150
    }
    pub fn snapshot_every() -> u64 {
        5000
    }
    pub fn keep_logs() -> u64 {
        1000
    }
    pub fn request_timeout_ms() -> u64 {
        3000
    }
}

impl ControllerConfig {
    pub fn new(id: NodeId, listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            id,
            listen,
            advertise: None,
            peers: BTreeMap::new(),
            data_dir,
            init: false,
            heartbeat_ms: defaults::heartbeat_ms(),
            election_timeout_ms: defaults::election_timeout_ms(),
            snapshot_every: defaults::snapshot_every(),
            keep_logs: defaults::keep_logs(),
            request_timeout_ms: defaults::request_timeout_ms(),
            allow_sim_evidence: false,
            tls: None,
            insecure: false,
            log_origin: defaults::log_origin(),
            migration: Default::default(),
        }
    }

    /// Loads the TLS material, or checks that plain text was asked for explicitly.
    pub fn transport(&self) -> Result<Option<ControllerTls>, ControllerError> {
        match (&self.tls, self.insecure) {
            (Some(_), true) => Err(ControllerError::Invalid(
                "both TLS files and insecure are set: choose one".into(),
            )),
            (Some(files), false) => {
                let tls = ControllerTls::load(files, self.id)?;
                tls.check_advertised(&self.advertised())?;
                Ok(Some(tls))
            }
            (None, true) => Ok(None),
            (None, false) => Err(ControllerError::Invalid(format!(
                "no TLS certificate: create a CA with `tribune ca init --dir DIR`, issue this controller's certificate with `tribune ca issue controller {id} --dir DIR`, then pass `--tls-dir DIR` (or --ca/--cert/--key); `--insecure` runs without TLS",
                id = self.id
            ))),
        }
    }

    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// openraft's configuration for these settings, validated (an election timeout not above
    /// the heartbeat is refused here, before anything is opened).
    pub(super) fn raft_config(&self) -> Result<Config, ControllerError> {
        if self.heartbeat_ms == 0
            || self.election_timeout_ms <= self.heartbeat_ms
            || self.election_timeout_ms > MAX_ELECTION_TIMEOUT_MS
        {
            return Err(ControllerError::Invalid(format!(
                "raft configuration: election_timeout_ms ({}) must be above heartbeat_ms ({}, not 0) and at most {MAX_ELECTION_TIMEOUT_MS}",
                self.election_timeout_ms, self.heartbeat_ms
            )));
        }
        // Elections are driven by `super::election` (pre-vote, staggered timeouts): openraft's
        // own timer is off, and its election timeout only sets the lease below which a voter
        // refuses a vote (its maximum) and how long a vote request may take (its minimum).
        let lease = super::election::Timing::from_ms(self.heartbeat_ms, self.election_timeout_ms)
            .raft_lease_ms();
        let c = Config {
            cluster_name: "tribune".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: lease - 1,
            election_timeout_max: lease,
            // Only a test build asked for the old behaviour runs openraft's timer.
            enable_elect: crate::test_fault::active(crate::test_fault::Fault::NoPreVote),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            // Entries are batches of up to ~1 MiB: a bounded number per AppendEntries keeps each
            // RPC well inside its (size-proportional) timeout.
            max_payload_entries: 32,
            // Chunks travel as JSON (about 3.5 bytes per byte): 1 MiB chunks keep each
            // InstallSnapshot RPC well inside its timeout on a loaded machine.
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 3000,
            ..Default::default()
        };
        if !signed_note::is_key_name_valid(&self.log_origin) {
            return Err(ControllerError::Invalid(format!(
                "log_origin {:?}: a checkpoint origin (and signed-note key name) must be non-empty, without spaces or '+'",
                self.log_origin
            )));
        }
        c.validate()
            .map_err(|e| ControllerError::Invalid(format!("raft configuration: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ControllerConfig {
        ControllerConfig::new(
            3,
            SocketAddr::from(([127, 0, 0, 1], 7401)),
            PathBuf::from("/tmp/c3"),
        )
    }

    #[test]
    fn new_and_a_minimal_file_get_the_same_defaults() {
        let c = config();
        assert_eq!(
            (
                c.heartbeat_ms,
                c.election_timeout_ms,
                c.snapshot_every,
                c.keep_logs,
                c.request_timeout_ms,
            ),
            (50, 150, 5000, 1000, 3000)
        );
        assert!(!c.init && !c.insecure && !c.allow_sim_evidence);
        assert!(c.tls.is_none() && c.advertise.is_none() && c.peers.is_empty());

        let parsed: ControllerConfig = serde_json::from_value(serde_json::json!({
            "id": 3, "listen": "127.0.0.1:7401", "data_dir": "/tmp/c3",
        }))
        .unwrap_or_else(|e| panic!("a minimal config parses: {e}"));
        assert_eq!(
            serde_json::to_value(&parsed).ok(),
            serde_json::to_value(&c).ok()
        );
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let r = serde_json::from_value::<ControllerConfig>(serde_json::json!({
            "id": 3, "listen": "127.0.0.1:7401", "data_dir": "/tmp/c3", "heartbeat": 10,
        }));
        assert!(r.is_err());
    }

    #[test]
    fn the_advertised_address_defaults_to_listen() {
        let mut c = config();
        assert_eq!(c.advertised(), "127.0.0.1:7401");
        c.advertise = Some("c3.example:7401".into());
        assert_eq!(c.advertised(), "c3.example:7401");
    }

    #[test]
    fn the_transport_is_tls_or_explicitly_insecure() {
        let mut c = config();
        match c.transport() {
            Err(ControllerError::Invalid(m)) => assert!(m.contains("--insecure"), "{m}"),
            other => panic!("no TLS and not insecure must be refused: {other:?}"),
        }
        c.insecure = true;
        assert!(matches!(c.transport(), Ok(None)));
        c.tls = Some(TlsFiles {
            ca: "ca.pem".into(),
            cert: "c.pem".into(),
            key: "c.key".into(),
        });
        match c.transport() {
            Err(ControllerError::Invalid(m)) => assert!(m.contains("choose one"), "{m}"),
            other => panic!("TLS and insecure together must be refused: {other:?}"),
        }
    }

    #[test]
    fn the_raft_config_follows_the_settings() {
        let mut c = config();
        c.heartbeat_ms = 20;
        c.election_timeout_ms = 100;
        c.snapshot_every = 7;
        c.keep_logs = 3;
        let r = c
            .raft_config()
            .unwrap_or_else(|e| panic!("valid settings: {e}"));
        assert_eq!(r.cluster_name, "tribune");
        assert_eq!(r.heartbeat_interval, 20);
        // openraft's timer is off (node/election.rs stands for election); its timeout is the
        // lease: under the pre-vote silence (100 - 20) by half a heartbeat.
        assert_eq!((r.election_timeout_min, r.election_timeout_max), (69, 70));
        assert!(!r.enable_elect);
        assert!(matches!(
            r.snapshot_policy,
            SnapshotPolicy::LogsSinceLast(7)
        ));
        assert_eq!(r.max_in_snapshot_log_to_keep, 3);
        assert_eq!(r.max_payload_entries, 32);
        assert_eq!(r.snapshot_max_chunk_size, 1024 * 1024);
        assert!(config().raft_config().is_ok(), "the defaults are valid");
        for bad in ["", "a b", "a+b", "tab\there"] {
            let mut c = config();
            c.log_origin = bad.into();
            let e = c.raft_config().expect_err(bad).to_string();
            assert!(e.contains("log_origin"), "{e}");
        }
    }

    #[test]
    fn an_election_timeout_not_above_the_heartbeat_is_refused() {
        for (heartbeat, election) in [
            (50, 50),
            (50, 10),
            (0, 0),
            (0, 100),
            (1, u64::MAX),
            (50, 600_001),
        ] {
            let mut c = config();
            c.heartbeat_ms = heartbeat;
            c.election_timeout_ms = election;
            match c.raft_config() {
                Err(ControllerError::Invalid(m)) => assert!(m.starts_with("raft configuration")),
                Ok(_) => panic!("heartbeat {heartbeat} election {election} must be refused"),
                Err(e) => panic!("wrong error: {e:?}"),
            }
        }
    }
}
