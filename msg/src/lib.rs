//! Tribune inter-enclave messages, the enclave's side (`docs/messages.md`).
//!
//! - [`wire`]: the length-prefixed, versioned frames between an enclave and its host's
//!   mediator (the one definition; the agent's mediator uses it too).
//! - [`stream`]: frames out of a byte stream cut anywhere (a socket, a QEMU guest's serial
//!   port): bounded to one frame, the first bad frame final.
//! - [`client`]: an async client an enclave uses: [`Client::send`] to another enclave by name,
//!   [`Client::recv`] the next message with its sender's attested name.
//!
//! The mediator, not the enclave, says who sent a message: a socket is bound to one enclave by
//! the agent, and frames carry no sender field.

pub mod client;
pub mod stream;
pub mod wire;

pub use client::{Client, ClientError, DeliveryError, SOCKET_ENV, SendError, Sent};
