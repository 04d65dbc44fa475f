//! Server side of `RaftService`: hands openraft's RPCs to the local Raft instance and serves
//! forwarded writes, read-index requests, status and log heads for the other controllers.
//!
//! With TLS, only callers whose client certificate names a controller get in: an agent or a
//! user holding a certificate from the same CA is refused with PERMISSION_DENIED.

use std::sync::Arc;

use tonic::{Request, Response, Status};
use tribune_proto::v1::raft_service_server::RaftService;
use tribune_proto::v1::{RaftPayload, ReadIndexRequest, ReadIndexResponse};

use tracing::Instrument;

use crate::node::{Controller, Forwarded};
use crate::raft::wire::{self, Form, MALFORMED, Wire};
use crate::tls::require_controller;

pub struct RaftServer {
    pub controller: Arc<Controller>,
}

/// An openraft message in the binary wire format or (from a controller before it) JSON.
fn decode_raft<T: Wire>(p: &RaftPayload) -> Result<(T, Form), Status> {
    wire::decode(&p.data).map_err(|e| Status::invalid_argument(format!("{MALFORMED}: {e}")))
}

/// The reply to an openraft message, in the form the message came in.
fn encode_raft<T: Wire>(v: &T, form: Form) -> Result<Response<RaftPayload>, Status> {
    wire::encode(v, form)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(format!("encoding reply: {e}")))
}

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    serde_json::from_slice(&p.data)
        .map_err(|e| Status::invalid_argument(format!("{MALFORMED}: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    serde_json::to_vec(v)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(format!("encoding reply: {e}")))
}

impl RaftServer {
    /// Lets only controllers in (when the controller runs with TLS).
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        require_controller(self.controller.tls.is_some(), req.extensions())
    }
}

#[tonic::async_trait]
impl RaftService for RaftServer {
    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        let (vote, form) = decode_raft(req.get_ref())?;
        let r = self.controller.raft.vote(vote).await;
        // Granting a vote restarts the election timer, as hearing from a leader does.
        if matches!(&r, Ok(v) if v.vote_granted) {
            self.controller.contact.touch();
        }
        encode_raft(&r, form)
    }

    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        let (append, form): (
            openraft::raft::AppendEntriesRequest<crate::raft::TypeConfig>,
            _,
        ) = decode_raft(req.get_ref())?;
        // Heard from the leader: from its message's arrival until it is answered (our fsync of
        // its entries, a core busy with the entries before) this follower is in contact — on a
        // busy machine that handling alone reached the election timeout, and the leader's next
        // append cannot come before this one is answered. Only a vote at least ours (the
        // leader we follow, or a newer one) counts.
        let current = self.controller.raft.metrics().borrow().vote;
        let handling = (append.vote >= current).then(|| self.controller.contact.handling());
        let r = self.controller.raft.append_entries(append).await;
        // And again once handled (not refused for a stale term): no election for a while.
        if matches!(&r, Ok(a) if !matches!(a, openraft::raft::AppendEntriesResponse::HigherVote(_)))
        {
            self.controller.contact.touch();
        }
        drop(handling);
        encode_raft(&r, form)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        let (chunk, form) = decode_raft(req.get_ref())?;
        let r = self.controller.raft.install_snapshot(chunk).await;
        if r.is_ok() {
            self.controller.contact.touch();
        }
        encode_raft(&r, form)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        let fwd: Forwarded = decode(req.get_ref())?;
        // The proposal, its commit and apply on the leader, in the caller's trace if it has one.
        let span = crate::node::commit_span(self.controller.id);
        if let Some(tp) = tribune_telemetry::trace::extract_metadata(req.metadata()) {
            tribune_telemetry::trace::set_parent(&span, tp);
        }
        let r = self.controller.serve_forwarded(fwd).instrument(span).await;
        encode(&r)
    }

    async fn read_index(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        self.authorize(&req)?;
        match self.controller.read_index().await {
            Ok(index) => Ok(Response::new(ReadIndexResponse { index: Some(index) })),
            Err(e) => Err(Status::failed_precondition(e.to_string())),
        }
    }

    async fn status(
        &self,
        req: Request<ReadIndexRequest>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        encode(&self.controller.status())
    }

    async fn log_head(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.authorize(&req)?;
        let q = decode(req.get_ref())?;
        match crate::integrity::peers::serve_head(&self.controller, q).await {
            Ok(reply) => encode(&reply),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}
