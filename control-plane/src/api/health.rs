//! `grpc.health.v1.Health` and gRPC server reflection (v1 and v1alpha) on the controller's
//! port, for load balancers, Kubernetes gRPC probes and `grpcurl`.
//!
//! Health follows readiness (`/readyz`): the overall status (service `""`) and
//! `tribune.v1.ControlService` are `SERVING` while this controller may serve reads and writes
//! (its integrity vouched, a leader known, its log applied) and `NOT_SERVING` otherwise,
//! re-checked every [`HEALTH_CHECK_EVERY`]. `RaftService` and `AttestationService` report
//! `SERVING` while the process runs: peers and agents need them before readiness. Neither
//! service needs credentials; reflection describes only the public `.proto` files.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::node::Controller;

/// How often health is re-derived from readiness.
pub const HEALTH_CHECK_EVERY: Duration = Duration::from_millis(500);

/// The services whose health follows readiness.
const FOLLOW_READINESS: [&str; 2] = ["", "tribune.v1.ControlService"];
/// The services healthy while the process runs.
const ALWAYS: [&str; 2] = ["tribune.v1.RaftService", "tribune.v1.AttestationService"];

/// `router` with the health and reflection services added. The health updater runs in the
/// current Tokio runtime (outside one, as in the fuzz target, the statuses are never updated).
pub fn add_health_and_reflection(
    router: axum::Router,
    controller: &Arc<Controller>,
) -> axum::Router {
    let (reporter, health) = tonic_health::server::health_reporter();
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(report_health(Arc::downgrade(controller), reporter));
    }
    let router = router.route_service("/grpc.health.v1.Health/{*method}", health);
    let v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tribune_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1();
    let v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tribune_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha();
    let router = match v1 {
        Ok(s) => router.route_service("/grpc.reflection.v1.ServerReflection/{*method}", s),
        Err(e) => {
            tracing::error!(error = %e, "gRPC reflection (v1) is off: the descriptor set did not load");
            router
        }
    };
    match v1alpha {
        Ok(s) => router.route_service("/grpc.reflection.v1alpha.ServerReflection/{*method}", s),
        Err(e) => {
            tracing::error!(error = %e, "gRPC reflection (v1alpha) is off: the descriptor set did not load");
            router
        }
    }
}

async fn report_health(controller: Weak<Controller>, reporter: HealthReporter) {
    for name in ALWAYS {
        reporter
            .set_service_status(name, ServingStatus::Serving)
            .await;
    }
    let mut last = None;
    let mut tick = tokio::time::interval(HEALTH_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = controller.upgrade() else {
            return;
        };
        let ready = c.integrity.ready().is_ok() && c.ready().is_ok();
        drop(c);
        let status = if ready {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        // Watchers are told only of a change (the reporter wakes them on every set).
        if last == Some(status) {
            continue;
        }
        last = Some(status);
        for name in FOLLOW_READINESS {
            reporter.set_service_status(name, status).await;
        }
    }
}
