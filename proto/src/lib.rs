//! Protocol buffers and generated tonic/prost code for Tribune's three gRPC services:
//! `ControlService` (users), `RaftService` (controller to controller) and
//! `AttestationService` (host agent to controller). No logic lives here but the conversions
//! between messages and the domain types they carry ([`convert`], one place for both sides).

/// `tribune.v1`: every message and service.
#[allow(clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("tribune.v1");
}

pub mod convert;

/// The host label every agent sets in its `Hello` to the runtime it runs enclaves with
/// (`process` or `qemu`; one runtime per agent). The controllers place a QEMU enclave, and
/// live-migrate one, only onto a host whose label says `qemu`; an operator's `--labels` may not
/// set it.
pub const RUNTIME_LABEL: &str = "tribune.dev/runtime";

/// The host label an agent sets in its `Hello` to `true` when it gives enclaves networking (it
/// runs with `--subnet`). The controllers place, and live-migrate, an enclave whose launch
/// spec asks for networking (`"network": true`) only onto such a host; an operator's
/// `--labels` may not set it.
pub const NETWORK_LABEL: &str = "tribune.dev/enclave-network";

/// The encoded `FileDescriptorSet` of every `.proto` file here, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/tribune_descriptor.bin"));
