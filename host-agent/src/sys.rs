//! What this process may do on this host: the root checks the agent, its cleanup and its
//! runtimes make before touching cgroups, namespaces, `tc` or another user's credentials.
//!
//! Depends on nothing else in the crate but the error type, so any module may ask.

use crate::error::{AgentError, Result};

/// The effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True when this process runs with effective uid 0.
pub fn is_root() -> bool {
    euid() == 0
}

/// Fails with a clear error ([`AgentError::NotRoot`]) when not root.
pub fn require_root() -> Result<()> {
    match euid() {
        0 => Ok(()),
        euid => Err(AgentError::NotRoot { euid }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn require_root_agrees_with_the_euid() {
        match require_root() {
            Ok(()) => assert!(is_root()),
            Err(AgentError::NotRoot { euid: e }) => assert_eq!(e, euid()),
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
}
