//! Controller-to-controller transport for openraft over tonic (`RaftService`).
//!
//! Payloads are openraft's request/response types in the binary wire format of `raft::wire`
//! inside `RaftPayload` (JSON to a controller from before it, found out by its refusal). Channels come
//! from [`Peers`], which is also what forwarding uses. With TLS, every channel verifies the
//! peer's certificate against the CA and presents this controller's own certificate (the peer's
//! `RaftService` accepts only controller certificates).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use tonic::transport::Channel;
use tribune_proto::v1::raft_service_client::RaftServiceClient;
use tribune_proto::v1::{RaftPayload, ReadIndexRequest};
use tribune_tls::ClientTls;

use super::wire::{self, Form, Wire};
use super::{Node, NodeId, TypeConfig};

/// Largest message a controller accepts or sends on the Raft transport (snapshot chunks and
/// append batches stay well under it).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// How long replication to an unreachable peer pauses before the next try (openraft's default
/// is 500 ms). A restarted controller must hear the leader before its own election timer
/// fires (lease + election timeout, 300 ms at the shortest with the bench's 25/100 ms timing):
/// otherwise it starts an election it cannot win, and its higher term deposes the leader. A
/// refused connect on a dead peer costs microseconds, so retrying every 50 ms is cheap — as long
/// as the retry does not first serialise a large payload: see [`Connection::call`].
const UNREACHABLE_RETRY: Duration = Duration::from_millis(50);

/// An append's time limit, in openraft's heartbeat-sized TTLs.
const APPEND_TTL_HEARTBEATS: u32 = 2;

/// A vote request's time limit, at least: the voter must fsync its vote before it answers.
/// openraft 0.9 gives a vote its `election_timeout_min` (74 ms at the product defaults); on a
/// busy machine the fsync alone took longer, every vote of an election timed out, nobody won,
/// and the next pre-vote round proposed yet another term (617 timed-out votes and ~250
/// elections per controller in one ingest run at load 10–18). A longer limit costs nothing when
/// the voter is quick, and a late answer to an election since superseded is ignored by
/// openraft (it checks the term); a new election is proposed only by the pre-vote driver
/// (`node/election.rs`), never by this timing out.
const VOTE_TTL_MIN: Duration = Duration::from_millis(500);

/// How long a vote request may take, given openraft's limit for it.
pub fn vote_ttl(openraft_ttl: Duration) -> Duration {
    openraft_ttl.max(VOTE_TTL_MIN)
}

/// Lazily connected, shared gRPC channels to other controllers, keyed by address.
#[derive(Clone, Default)]
pub struct Peers {
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    /// `None` only for `--insecure` controllers: plain-text channels. Replaced by
    /// [`Peers::set_tls`] when the certificates are reloaded (SIGHUP).
    tls: Arc<std::sync::RwLock<Option<Arc<ClientTls>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("invalid peer address {addr:?}: {reason}")]
    BadAddress { addr: String, reason: String },
}

impl Peers {
    pub fn new(tls: Option<ClientTls>) -> Self {
        Self {
            channels: Arc::default(),
            tls: Arc::new(std::sync::RwLock::new(tls.map(Arc::new))),
        }
    }

    /// Presents `tls`'s certificate from now on: the cached channels are dropped, so the next
    /// call to each peer connects (and shakes hands) anew; calls in flight finish on the
    /// connections they have.
    pub fn set_tls(&self, tls: ClientTls) {
        *self.tls.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(tls));
        self.channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    pub fn client(&self, addr: &str) -> Result<RaftServiceClient<Channel>, PeerError> {
        let tls = self.tls.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match map.get(addr) {
            Some(c) => c.clone(),
            None => {
                let endpoint = tribune_tls::endpoint(addr, tls.as_deref())
                    .map_err(|e| PeerError::BadAddress {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })?
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5));
                let c = endpoint.connect_lazy();
                map.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX))
    }
}

pub struct NetworkFactory {
    pub peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            peers: self.peers.clone(),
            unreachable: false,
            form: Form::Binary,
        }
    }
}

pub struct Connection {
    target: NodeId,
    addr: String,
    peers: Peers,
    /// The last call found the peer unreachable.
    unreachable: bool,
    /// How messages to this peer are encoded: the binary format, or JSON once the peer refused
    /// it as a controller from before the binary format does (a rolling upgrade).
    form: Form,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

type RpcErr<E> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

impl Connection {
    async fn call<Req, Resp, E>(
        &mut self,
        which: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: Wire,
        Result<Resp, RaftError<NodeId, E>>: Wire,
        E: std::error::Error + DeserializeOwned,
    {
        let mut r = self.call_once(which, req, ttl).await;
        if let Err(Refused::OldPeer(status)) = &r
            && self.form == Form::Binary
        {
            tracing::info!(
                peer = self.target,
                "node {} refused the binary raft wire format ({}): it predates it; speaking JSON to it",
                self.target,
                status.message()
            );
            self.form = Form::Json;
            r = self.call_once(which, req, ttl).await;
        }
        let r = r.map_err(|e| match e {
            Refused::Rpc(e) => *e,
            Refused::OldPeer(status) => RPCError::Network(NetworkError::new(&status)),
        });
        self.unreachable = matches!(r, Err(RPCError::Unreachable(_)));
        r
    }

    async fn call_once<Req, Resp, E>(
        &self,
        which: Rpc,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, Refused<E>>
    where
        Req: Wire,
        Result<Resp, RaftError<NodeId, E>>: Wire,
        E: std::error::Error + DeserializeOwned,
    {
        // A peer that was unreachable gets a cheap probe first: replicating to it may mean a
        // batch of entries or a snapshot chunk (megabytes), not worth building every retry while
        // it is down.
        if self.unreachable && !matches!(which, Rpc::Vote) {
            let mut client = self
                .peers
                .client(&self.addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
            if let Ok(Err(status)) =
                tokio::time::timeout(ttl, client.status(ReadIndexRequest {})).await
                && status.code() == tonic::Code::Unavailable
            {
                return Err(RPCError::Unreachable(Unreachable::new(&status)).into());
            }
        }
        let data =
            wire::encode(req, self.form).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        // openraft's TTL is sized for a heartbeat; a large append or snapshot chunk gets more
        // time in proportion to its size, so a big entry is not mistaken for a dead peer (which
        // would start an election and another, as a burst of large writes once did).
        let ttl = ttl + payload_allowance(data.len());
        let mut client = self
            .peers
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let payload = RaftPayload { data };
        let fut = async {
            match which {
                Rpc::Vote => client.vote(payload).await,
                Rpc::Append => client.append_entries(payload).await,
                Rpc::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => {
                return Err(RPCError::Network(NetworkError::new(&Msg(format!(
                    "{which:?} to node {} timed out after {ttl:?}",
                    self.target
                ))))
                .into());
            }
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)).into());
            }
            Ok(Err(status)) if wire::is_old_peer_refusal(&status) => {
                return Err(Refused::OldPeer(status));
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status)).into()),
            Ok(Ok(r)) => r.into_inner(),
        };
        let (result, _): (Result<Resp, RaftError<NodeId, E>>, _) =
            wire::decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)).into())
    }
}

/// Why a call failed: openraft's error, or a peer from before the binary wire format.
enum Refused<E: std::error::Error> {
    Rpc(Box<RpcErr<E>>),
    OldPeer(tonic::Status),
}

impl<E: std::error::Error> From<RpcErr<E>> for Refused<E> {
    fn from(e: RpcErr<E>) -> Self {
        Refused::Rpc(Box::new(e))
    }
}

/// Extra time for a payload of `bytes`: 1 ms per 64 KiB (a conservative 64 MB/s, with the
/// entries' JSON decoding on a loaded 2-core machine), nothing for a heartbeat-sized one.
pub fn payload_allowance(bytes: usize) -> Duration {
    Duration::from_millis((bytes / (64 * 1024)) as u64)
}

#[derive(Debug, Clone, Copy)]
enum Rpc {
    Vote,
    Append,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        // openraft 0.9 gives an append one heartbeat interval; a follower whose fsync or
        // scheduling is slower than that (a busy machine) is not dead, and a timed-out append
        // is resent from scratch. Two heartbeats: still under the election timeout.
        self.call(Rpc::Append, &req, option.hard_ttl() * APPEND_TTL_HEARTBEATS)
            .await
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Rpc::Snapshot, &req, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call(Rpc::Vote, &req, vote_ttl(option.hard_ttl()))
            .await
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_RETRY))
    }
}

#[cfg(test)]
mod tests {
    use tribune_testkit::tls::{CertRecorder, cert_der, issue, make_ca, reissue};
    use tribune_tls::PeerIdentity;

    use super::*;

    #[test]
    fn a_vote_gets_time_for_the_voters_fsync_on_a_busy_machine() {
        let ms = Duration::from_millis;
        // openraft's limit at the product defaults (election_timeout_min).
        assert_eq!(vote_ttl(ms(74)), ms(500));
        assert_eq!(vote_ttl(ms(0)), ms(500));
        // A longer limit (slow timings) is kept.
        assert_eq!(vote_ttl(ms(3000)), ms(3000));
    }

    /// Calls the recorder until it has seen `n` handshakes.
    async fn dial_until_seen(peers: &Peers, rec: &CertRecorder, n: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while rec.seen().len() < n {
            assert!(std::time::Instant::now() < deadline, "no handshake seen");
            let mut client = peers.client(&rec.addr).expect("client");
            let _ =
                tokio::time::timeout(Duration::from_secs(2), client.status(ReadIndexRequest {}))
                    .await;
        }
    }

    #[tokio::test]
    async fn after_a_reload_new_connections_present_the_new_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        make_ca(dir.path());
        let rec =
            CertRecorder::start(&issue(dir.path(), &PeerIdentity::Controller { id: 2 })).await;
        let me = PeerIdentity::Controller { id: 1 };
        let old = issue(dir.path(), &me);
        let peers = Peers::new(Some(ClientTls::from_files(&old).expect("client tls")));
        dial_until_seen(&peers, &rec, 1).await;
        assert_eq!(rec.seen()[0], cert_der(&old.cert));

        // Rotated (a new key and certificate from the same CA), then reloaded.
        let new = reissue(dir.path(), &dir.path().join("rotated"), &me);
        assert_ne!(cert_der(&new.cert), cert_der(&old.cert));
        peers.set_tls(ClientTls::from_files(&new).expect("client tls"));
        let before = rec.seen().len();
        dial_until_seen(&peers, &rec, before + 1).await;
        assert_eq!(
            rec.seen().last(),
            Some(&cert_der(&new.cert)),
            "the connection after the reload presented the old certificate"
        );
    }
}
