//! Protocol buffers and generated tonic/prost code for Tribune's three gRPC services:
//! `ControlService` (users), `RaftService` (controller to controller) and
//! `AttestationService` (host agent to controller). No logic lives here.

#![allow(clippy::all, clippy::pedantic)]

/// `tribune.v1`: every message and service.
pub mod v1 {
    tonic::include_proto!("tribune.v1");
}
