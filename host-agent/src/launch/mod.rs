//! What this host agrees to launch, and as whom. An API caller never chooses what runs as
//! root on a host (DESIGN.md §6, invariant 9): a plan's launch spec is checked against the
//! host's own allow-list before anything is created for it, and the enclave runs under an
//! unprivileged uid with no capabilities.
//!
//! - [`policy`]: the allow-list file (TOML) and its validation; [`LaunchPolicy`] is what the
//!   agent is configured with (`Unconfigured` refuses everything).
//! - [`check`](mod@check): the pure check, spec → [`CheckedLaunch`] or [`LaunchRefused`];
//!   hashing files is behind [`FileDigests`].
//! - [`files`]: [`HostFiles`], the digests of this host's files (cached per file identity).
//! - [`users`]: [`EnclaveUsers`], which uid/gid an enclave gets.
//!
//! The privilege drop itself happens in the runtime, between `fork` and `exec`
//! (`runtime::spawn_confined`).

pub mod check;
pub mod files;
pub mod policy;
pub mod users;

pub use check::{CheckedLaunch, FileDigests, FileError, FileFacts, LaunchRefused, Refusal, check};
pub use files::HostFiles;
pub use policy::{AllowList, Digest, DigestError, LaunchPolicy, PolicyError, RuleError};
pub use users::{Credentials, EnclaveUsers, UsersError};
