//! Writes and membership changes from any controller: run on the leader when this node leads,
//! else forwarded to it over `RaftService.Forward` (the request and the reply as JSON), retried
//! across leader changes until the request deadline — but only while nothing can have been
//! proposed: once a request may have reached Raft, a failure is `OutcomeUnknown`.

use std::time::{Duration, Instant};
use tracing::Instrument;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tribune_proto::v1::RaftPayload;

use super::Controller;
use super::batch::{Pending, SubmitError};
use crate::error::ControllerError;
use crate::raft::NodeId;
use crate::state::{Command, Outcome};

/// Requests a follower hands to the leader.
#[derive(Debug, Serialize, Deserialize)]
pub enum Forwarded {
    Write(Vec<Command>),
    AddMember {
        id: NodeId,
        addr: String,
        voter: bool,
    },
    Promote {
        id: NodeId,
    },
    RemoveMember {
        id: NodeId,
    },
    /// Not for the leader: the stopping leader `from`, at `term`, asks a follower holding
    /// every entry up to `last_log_index` to stand for election at once (`node/handover.rs`).
    Stand {
        from: NodeId,
        term: u64,
        last_log_index: Option<u64>,
    },
}

/// The leader's answer to a [`Forwarded`] request.
#[derive(Debug, Serialize, Deserialize)]
pub enum ForwardReply {
    Outcomes(Vec<Outcome>),
    Done,
}

/// Why running a request on this node (believed the leader) did not succeed.
#[derive(Debug)]
pub(super) enum LeaderError {
    /// This node does not lead after all: nothing was proposed, another leader may be tried.
    NotLeader,
    Failed(ControllerError),
}

/// Why forwarding a request to the leader did not succeed.
#[derive(Debug)]
enum ForwardFailure {
    /// The request cannot have been proposed: retrying (on the next leader) is safe.
    NotSent(String),
    Failed(ControllerError),
}

/// The span of a proposal's commit and apply on the leader, when tracing is on (a child of the
/// caller's span: a traced decision, or a forwarded write's remote parent).
pub(crate) fn commit_span(id: crate::raft::NodeId) -> tracing::Span {
    if tribune_telemetry::trace::enabled() {
        tracing::info_span!("raft.commit", controller = id)
    } else {
        tracing::Span::none()
    }
}

impl Controller {
    /// Writes commands through Raft from any controller. Outcomes are in command order.
    pub async fn write(&self, cmds: Vec<Command>) -> Result<Vec<Outcome>, ControllerError> {
        let m = crate::metrics::get();
        m.writes.inc();
        let started = Instant::now();
        let reply = self.forwardable(Forwarded::Write(cmds)).await;
        m.write_seconds.observe(started.elapsed().as_secs_f64());
        match reply? {
            ForwardReply::Outcomes(o) => Ok(o),
            ForwardReply::Done => Err(ControllerError::Internal(
                "leader answered a write without outcomes".into(),
            )),
        }
    }

    /// Runs a request on the leader: here if this node leads, else forwarded.
    pub async fn forwardable(&self, req: Forwarded) -> Result<ForwardReply, ControllerError> {
        let deadline = Instant::now() + self.timeout();
        loop {
            match self.leader() {
                Some((id, _)) if id == self.id => match self
                    .run_on_leader(&req, deadline)
                    .instrument(commit_span(self.id))
                    .await
                {
                    Err(LeaderError::NotLeader) => {}
                    Err(LeaderError::Failed(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                },
                Some((_, addr)) => match self.forward(&addr, &req, deadline).await {
                    Err(ForwardFailure::NotSent(reason)) => {
                        tracing::debug!(%reason, "forwarding failed before sending; retrying");
                    }
                    Err(ForwardFailure::Failed(e)) => return Err(e),
                    Ok(r) => return Ok(r),
                },
                None => {}
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ControllerError::NoLeader {
                    retry_after_ms: 1000,
                });
            }
            self.wait_for_leader_change(left.min(Duration::from_millis(100)))
                .await;
        }
    }

    /// Serves a forwarded request (this node believes it leads).
    pub async fn serve_forwarded(&self, req: Forwarded) -> Result<ForwardReply, ControllerError> {
        if let Forwarded::Stand {
            from,
            term,
            last_log_index,
        } = req
        {
            return self
                .stand_when_asked(from, term, last_log_index)
                .await
                .map(|()| ForwardReply::Done);
        }
        let deadline = Instant::now() + self.timeout();
        match self.run_on_leader(&req, deadline).await {
            Ok(r) => Ok(r),
            Err(LeaderError::NotLeader) => Err(ControllerError::NotLeader { id: self.id }),
            Err(LeaderError::Failed(e)) => Err(e),
        }
    }

    async fn run_on_leader(
        &self,
        req: &Forwarded,
        deadline: Instant,
    ) -> Result<ForwardReply, LeaderError> {
        // A stopping leader handing over proposes nothing new: the caller retries on the next.
        if self.handing_over() {
            return Err(LeaderError::NotLeader);
        }
        match req {
            Forwarded::Stand { .. } => Err(LeaderError::Failed(ControllerError::Invalid(
                "a leader is not asked to stand".into(),
            ))),
            Forwarded::Write(cmds) => self.write_on_leader(cmds, deadline).await,
            Forwarded::AddMember { id, addr, voter } => {
                self.add_member_on_leader(*id, addr, *voter, deadline)
                    .await?;
                Ok(ForwardReply::Done)
            }
            Forwarded::Promote { id } => {
                self.promote_on_leader(*id, deadline).await?;
                Ok(ForwardReply::Done)
            }
            Forwarded::RemoveMember { id } => {
                self.remove_member_on_leader(*id, deadline).await?;
                Ok(ForwardReply::Done)
            }
        }
    }

    /// Queues the commands for the write batcher and waits for each outcome, in order.
    async fn write_on_leader(
        &self,
        cmds: &[Command],
        deadline: Instant,
    ) -> Result<ForwardReply, LeaderError> {
        let mut rxs = Vec::with_capacity(cmds.len());
        for cmd in cmds {
            let (reply, rx) = oneshot::channel();
            self.writes
                .send(Pending {
                    cmd: cmd.clone(),
                    reply,
                })
                .await
                .map_err(|_| {
                    LeaderError::Failed(ControllerError::Internal("write batcher stopped".into()))
                })?;
            rxs.push(rx);
        }
        let mut outcomes = Vec::with_capacity(rxs.len());
        for rx in rxs {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, rx).await {
                Err(_) => return Err(self.not_committed_in_time("the write was")),
                Ok(Err(_)) => {
                    return Err(LeaderError::Failed(ControllerError::Internal(
                        "write dropped".into(),
                    )));
                }
                Ok(Ok(Err(SubmitError::NotLeader))) => return Err(LeaderError::NotLeader),
                Ok(Ok(Err(SubmitError::Failed(e)))) => {
                    return Err(LeaderError::Failed(ControllerError::OutcomeUnknown {
                        reason: e,
                    }));
                }
                Ok(Ok(Ok(o))) => outcomes.push(o),
            }
        }
        Ok(ForwardReply::Outcomes(outcomes))
    }

    /// `what` ("the write was", …) did not commit before the request deadline.
    pub(super) fn not_committed_in_time(&self, what: &str) -> LeaderError {
        LeaderError::Failed(ControllerError::OutcomeUnknown {
            reason: format!(
                "{what} not committed within {} ms",
                self.config.request_timeout_ms
            ),
        })
    }

    async fn forward(
        &self,
        addr: &str,
        req: &Forwarded,
        deadline: Instant,
    ) -> Result<ForwardReply, ForwardFailure> {
        let mut client = self
            .peers
            .client(addr)
            .map_err(|e| ForwardFailure::NotSent(e.to_string()))?;
        let data = serde_json::to_vec(req)
            .map_err(|e| ForwardFailure::Failed(ControllerError::Internal(e.to_string())))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let mut request = tonic::Request::new(RaftPayload { data });
        // The caller's trace (a sampled usage window's decision) continues on the leader.
        tribune_telemetry::trace::inject_metadata(
            &tracing::Span::current(),
            request.metadata_mut(),
        );
        let reply = match tokio::time::timeout(left, client.forward(request)).await {
            Err(_) => {
                return Err(ForwardFailure::Failed(ControllerError::OutcomeUnknown {
                    reason: format!("the leader at {addr} did not answer in time"),
                }));
            }
            Ok(Err(status)) => return Err(send_failure(addr, &status)),
            Ok(Ok(r)) => r.into_inner(),
        };
        let result: Result<ForwardReply, ControllerError> = serde_json::from_slice(&reply.data)
            .map_err(|e| {
                ForwardFailure::Failed(ControllerError::Internal(format!(
                    "bad reply from leader: {e}"
                )))
            })?;
        leader_answer(result)
    }
}

/// A `Forward` call to the leader at `addr` failed with `status`: not sent if the connection
/// was never made, else the request may have been proposed.
fn send_failure(addr: &str, status: &tonic::Status) -> ForwardFailure {
    if is_connect_error(status) {
        ForwardFailure::NotSent(status.to_string())
    } else {
        ForwardFailure::Failed(ControllerError::OutcomeUnknown {
            reason: format!("forwarding to the leader at {addr}: {}", status.message()),
        })
    }
}

fn is_connect_error(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && {
        let m = status.message().to_ascii_lowercase();
        m.contains("connect") || m.contains("refused") || m.contains("transport")
    }
}

/// The leader's answer: a peer that turned out not to lead (it stepped down) proposed nothing.
fn leader_answer(
    result: Result<ForwardReply, ControllerError>,
) -> Result<ForwardReply, ForwardFailure> {
    match result {
        Err(e @ ControllerError::NotLeader { .. }) => Err(ForwardFailure::NotSent(e.to_string())),
        Err(e) => Err(ForwardFailure::Failed(e)),
        Ok(r) => Ok(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn only_an_unavailable_connection_counts_as_not_sent() {
        for (code, message, not_sent) in [
            (
                Code::Unavailable,
                "error trying to connect: tcp connect error",
                true,
            ),
            (Code::Unavailable, "Connection refused (os error 111)", true),
            (Code::Unavailable, "transport error", true),
            (Code::Unavailable, "the service is shutting down", false),
            (Code::Unknown, "transport error", false),
            (Code::DeadlineExceeded, "connect timed out", false),
            (Code::Internal, "h2 protocol error", false),
        ] {
            let status = Status::new(code, message);
            assert_eq!(is_connect_error(&status), not_sent, "{code:?} {message}");
            match send_failure("10.0.0.1:7401", &status) {
                ForwardFailure::NotSent(_) => assert!(not_sent, "{code:?} {message}"),
                ForwardFailure::Failed(ControllerError::OutcomeUnknown { reason }) => {
                    assert!(!not_sent, "{code:?} {message}");
                    assert!(reason.contains("10.0.0.1:7401") && reason.contains(message));
                }
                ForwardFailure::Failed(e) => panic!("unexpected {e:?}"),
            }
        }
    }

    #[test]
    fn a_leader_that_stepped_down_proposed_nothing() {
        assert!(matches!(
            leader_answer(Err(ControllerError::NotLeader { id: 2 })),
            Err(ForwardFailure::NotSent(_))
        ));
        for e in [
            ControllerError::OutcomeUnknown { reason: "x".into() },
            ControllerError::Invalid("bad".into()),
            ControllerError::NoLeader {
                retry_after_ms: 1000,
            },
        ] {
            match leader_answer(Err(e.clone())) {
                Err(ForwardFailure::Failed(got)) => assert_eq!(got, e),
                other => panic!("{e:?} must be passed on: {other:?}"),
            }
        }
        assert!(matches!(
            leader_answer(Ok(ForwardReply::Done)),
            Ok(ForwardReply::Done)
        ));
    }

    #[test]
    fn the_wire_format_between_controllers_is_stable() {
        // Controllers of one cluster may run different builds during an upgrade: the JSON a
        // follower sends and the leader answers must not change shape.
        let cases = [
            (
                Forwarded::AddMember {
                    id: 4,
                    addr: "c4:7401".into(),
                    voter: true,
                },
                r#"{"AddMember":{"id":4,"addr":"c4:7401","voter":true}}"#,
            ),
            (Forwarded::Promote { id: 4 }, r#"{"Promote":{"id":4}}"#),
            (
                Forwarded::RemoveMember { id: 4 },
                r#"{"RemoveMember":{"id":4}}"#,
            ),
            (Forwarded::Write(Vec::new()), r#"{"Write":[]}"#),
            (
                Forwarded::Stand {
                    from: 1,
                    term: 5,
                    last_log_index: Some(42),
                },
                r#"{"Stand":{"from":1,"term":5,"last_log_index":42}}"#,
            ),
        ];
        for (req, json) in cases {
            assert_eq!(serde_json::to_string(&req).ok().as_deref(), Some(json));
        }
        let done: Result<ForwardReply, ControllerError> = Ok(ForwardReply::Done);
        assert_eq!(
            serde_json::to_string(&done).ok().as_deref(),
            Some(r#"{"Ok":"Done"}"#)
        );
        let refused: Result<ForwardReply, ControllerError> =
            Err(ControllerError::NotLeader { id: 1 });
        let text = serde_json::to_string(&refused).unwrap_or_default();
        assert_eq!(text, r#"{"Err":{"NotLeader":{"id":1}}}"#);
        let back: Result<Result<ForwardReply, ControllerError>, _> = serde_json::from_str(&text);
        assert!(matches!(
            back,
            Ok(Err(ControllerError::NotLeader { id: 1 }))
        ));
    }
}
