//! The live-migration RPCs of `ControlService` (`MigrateEnclave`, `ListMigrations`): proto ↔
//! domain conversion around the operations of `api/migrate.rs`.

use tonic::{Request, Response, Status};
use tribune_proto::v1 as pb;

use super::grpc::ControlServer;
use super::migrate::MigrateRequest;
use crate::state::{LiveCause, LiveMigration, LivePhase};

/// A migration as its message (phase and cause in the JSON API's words).
pub fn migration(m: LiveMigration) -> pb::Migration {
    let p = m.progress;
    pb::Migration {
        id: m.id,
        enclave: m.enclave,
        from: m.from,
        to: m.to,
        epoch: m.epoch,
        listen: m.listen,
        phase: match m.phase {
            LivePhase::Preparing => "preparing",
            LivePhase::Transferring => "transferring",
            LivePhase::Committed => "committed",
            LivePhase::RolledBack => "rolled_back",
        }
        .into(),
        cause: match m.cause {
            LiveCause::Request => "request",
            LiveCause::Drain => "drain",
            LiveCause::Policy => "policy",
        }
        .into(),
        actor: m.actor,
        forced: m.forced,
        started_ms: m.started_ms,
        ready_ms: m.ready_ms.unwrap_or(0),
        ended_ms: m.ended_ms.unwrap_or(0),
        reason: m.reason,
        progress: Some(pb::MigrationFigures {
            status: p.status,
            transferred_bytes: p.transferred_bytes,
            remaining_bytes: p.remaining_bytes,
            total_bytes: p.total_bytes,
            dirty_pages_rate: p.dirty_pages_rate,
            mbps: p.mbps,
            expected_downtime_ms: p.expected_downtime_ms,
            downtime_ms: p.downtime_ms,
            total_time_ms: p.total_time_ms,
        }),
    }
}

impl ControlServer {
    pub(super) async fn migrate_enclave_rpc(
        &self,
        req: Request<pb::MigrateEnclaveRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        let who = self.who(&req)?;
        let r = req.into_inner();
        let body = MigrateRequest {
            to: (!r.to.is_empty()).then_some(r.to),
            force: r.force,
        };
        let m = self.api.migrate_enclave(&who, &r.id, body).await?;
        Ok(Response::new(migration(m)))
    }

    pub(super) async fn list_migrations_rpc(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        let who = self.who(&req)?;
        let m = self.api.migrations(&who, req.get_ref().stale).await?;
        Ok(Response::new(pb::ListMigrationsResponse {
            current: m.current.into_iter().map(migration).collect(),
            past: m.past.into_iter().map(migration).collect(),
        }))
    }
}
