//! Who an enclave runs as. Never root: by default each enclave gets a uid (and the same gid)
//! of its own from a range no other software allocates, so enclaves cannot signal, trace or
//! read each other; or every enclave runs as one configured user.
//!
//! The default range, 60600–61111, sits in the gap systemd leaves unassigned between its
//! `systemd-homed`/`nspawn` ranges (60001–60577) and `DynamicUser=` (61184–65519)
//! (systemd's `UIDS-GIDS.md`), below `nobody` (65534).

use serde::Serialize;

/// First uid of the default per-enclave range.
pub const UID_FIRST_DEFAULT: u32 = 60600;
/// Size of the default range: at most this many enclaves run at once per agent.
pub const UID_COUNT_DEFAULT: u32 = 512;
/// Largest range accepted.
pub const UID_COUNT_MAX: u32 = 1 << 20;

/// A uid and gid an enclave runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Credentials {
    pub uid: u32,
    pub gid: u32,
}

/// How the agent picks an enclave's credentials (when it runs as root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnclaveUsers {
    /// Each enclave its own uid = gid: the lowest of `first..first + count` no running
    /// enclave of this agent holds.
    Range { first: u32, count: u32 },
    /// Every enclave as this uid and gid.
    Fixed(Credentials),
}

impl Default for EnclaveUsers {
    fn default() -> Self {
        EnclaveUsers::Range {
            first: UID_FIRST_DEFAULT,
            count: UID_COUNT_DEFAULT,
        }
    }
}

impl std::fmt::Display for EnclaveUsers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnclaveUsers::Range { first, count } => write!(
                f,
                "uid/gid {first}-{} (one per enclave)",
                first + count.saturating_sub(1)
            ),
            EnclaveUsers::Fixed(c) => write!(f, "uid {} gid {} (every enclave)", c.uid, c.gid),
        }
    }
}

/// Why an [`EnclaveUsers`] setting is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsersError {
    #[error(
        "enclave uid {uid} gid {gid}: enclaves never run as root (0) or as -1; \
         choose an unprivileged user"
    )]
    Privileged { uid: u32, gid: u32 },
    #[error("enclave uid range of {count}: give 1..={UID_COUNT_MAX} ids")]
    RangeSize { count: u32 },
    #[error(
        "enclave uid range {first}+{count}: it must not hold 0 (root) or \
         4294967295; the default is {UID_FIRST_DEFAULT}-{}",
        UID_FIRST_DEFAULT + UID_COUNT_DEFAULT - 1
    )]
    RangeHoldsPrivileged { first: u32, count: u32 },
}

impl EnclaveUsers {
    /// Refuses what would run an enclave as root or with an id the kernel reads as "none".
    pub fn validate(&self) -> Result<(), UsersError> {
        // (uid_t)-1 means "leave unchanged" to setresuid; 0 is root.
        let bad = |id: u32| id == 0 || id == u32::MAX;
        match *self {
            EnclaveUsers::Fixed(c) => {
                if bad(c.uid) || bad(c.gid) {
                    return Err(UsersError::Privileged {
                        uid: c.uid,
                        gid: c.gid,
                    });
                }
            }
            EnclaveUsers::Range { first, count } => {
                if count == 0 || count > UID_COUNT_MAX {
                    return Err(UsersError::RangeSize { count });
                }
                let last = first.checked_add(count - 1).filter(|l| !bad(*l));
                if bad(first) || last.is_none() {
                    return Err(UsersError::RangeHoldsPrivileged { first, count });
                }
            }
        }
        Ok(())
    }

    /// The credentials for a new enclave, given the uids running enclaves hold; `None` when
    /// the range is used up.
    pub fn pick(&self, in_use: &[u32]) -> Option<Credentials> {
        match *self {
            EnclaveUsers::Fixed(c) => Some(c),
            EnclaveUsers::Range { first, count } => (first..first.saturating_add(count))
                .find(|u| !in_use.contains(u))
                .map(|uid| Credentials { uid, gid: uid }),
        }
    }
}

/// The real uid and gid of a running process (for an enclave adopted after a crash).
pub fn credentials_of(pid: u32) -> Option<Credentials> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let first = |key: &str| -> Option<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(Credentials {
        uid: first("Uid:")?,
        gid: first("Gid:")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_minus_one_are_never_accepted() {
        let fixed = |uid, gid| EnclaveUsers::Fixed(Credentials { uid, gid });
        assert!(fixed(0, 1000).validate().is_err());
        assert!(fixed(1000, 0).validate().is_err());
        assert!(fixed(u32::MAX, 1000).validate().is_err());
        assert!(fixed(1000, 1000).validate().is_ok());
        let range = |first, count| EnclaveUsers::Range { first, count };
        assert!(range(0, 10).validate().is_err());
        assert!(range(u32::MAX - 4, 5).validate().is_err());
        assert!(range(u32::MAX - 5, 5).validate().is_ok());
        assert!(range(u32::MAX - 4, 10).validate().is_err());
        assert!(range(100, 0).validate().is_err());
        assert!(range(100, UID_COUNT_MAX + 1).validate().is_err());
        assert!(EnclaveUsers::default().validate().is_ok());
    }

    #[test]
    fn each_enclave_gets_the_lowest_free_uid_of_the_range() {
        let r = EnclaveUsers::Range {
            first: 61000,
            count: 3,
        };
        let c = |u| Some(Credentials { uid: u, gid: u });
        assert_eq!(r.pick(&[]), c(61000));
        assert_eq!(r.pick(&[61000, 5]), c(61001));
        assert_eq!(r.pick(&[61001]), c(61000));
        assert_eq!(r.pick(&[61000, 61001, 61002]), None);
        let f = EnclaveUsers::Fixed(Credentials { uid: 7, gid: 8 });
        assert_eq!(f.pick(&[7, 7]), Some(Credentials { uid: 7, gid: 8 }));
        assert_eq!(
            EnclaveUsers::default().to_string(),
            "uid/gid 60600-61111 (one per enclave)"
        );
    }

    #[test]
    fn credentials_of_reads_proc() {
        let me = credentials_of(std::process::id()).unwrap();
        // SAFETY: no preconditions.
        assert_eq!(me.uid, unsafe { libc::getuid() });
        assert_eq!(me.gid, unsafe { libc::getgid() });
        assert_eq!(credentials_of(u32::MAX), None);
    }
}
