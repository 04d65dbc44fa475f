//! The control API: one set of operations ([`service`]) served as HTTP/JSON ([`http`]) and as
//! gRPC ([`grpc`]), so the two can never disagree about what an operation does. Beside them:
//! `grpc.health.v1` and server reflection ([`health`]), `/metrics` and the access log
//! ([`observe`]); the OpenAPI 3.1 document of the HTTP/JSON API, generated from the handlers'
//! annotations and the domain types ([`openapi`]).

pub mod bounds;
pub mod console;
pub mod grpc;
mod grpc_migrate;
mod grpc_schedule;
pub mod health;
pub mod http;
pub mod log;
pub mod migrate;
pub mod observe;
pub mod openapi;
pub mod plan;
pub mod problem;
pub mod receipt;
pub mod request;
pub mod schedule;
pub mod service;
pub mod tokens;
