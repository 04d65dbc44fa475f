//! What Tribune's tests and benchmarks share, one implementation of each:
//!
//! - [`ports`]: loopback ports free right now, never the same one twice in a process;
//! - [`dir`]: a temp dir per test, kept (and its path printed) when the test fails;
//! - [`tls`]: a CA of a test cluster's own and the certificates it issues;
//! - [`process`]: SIGTERM, then wait up to a deadline, then SIGKILL;
//! - [`wait`]: waiting on a condition with a deadline that names what it waited for;
//! - [`cluster`]: a local cluster of real `tribune controller` processes (spawn, kill -9,
//!   restart, stop);
//! - [`agent`]: a real `tribune agent run` process streaming to such a cluster;
//! - [`testdata`]: where the shared attestation test data is.
//!
//! Test code may `expect()` the `try_` variants away; `tribune bench` and `tribune dev` use
//! the [`Error`]s.

pub mod agent;
pub mod cluster;
pub mod dir;
pub mod ports;
pub mod process;
pub mod testdata;
pub mod tls;
pub mod wait;

use std::time::Duration;

pub use cluster::{LocalCluster, Logs, Node, Options};
pub use dir::TestDir;
pub use ports::{free_port, try_free_port};
pub use wait::DEADLINE;

/// Why a piece of set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS material: {0}")]
    Tls(#[from] tribune_tls::TlsError),
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout { what: String, after: Duration },
    #[error("no free loopback port found in {tries} tries")]
    NoPort { tries: usize },
    #[error("no controller {0} in this cluster")]
    NoNode(u64),
    #[error("controller {0} is still running")]
    StillRunning(u64),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// True when this process runs as root (cgroups, namespaces and tc need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Says `skipped: MSG` straight to stderr: the test harness captures `eprintln!` of passing
/// tests, and a skipped test must never pass silently.
pub fn say_skipped(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipped: {msg}");
}

/// The `tribune` binary of this build, for the tests of crates other than `tribune` (cargo
/// gives a test only its own crate's binaries): `$TRIBUNE_BIN` when set, else `tribune` in the
/// target directory the running test executable was built into (`target/debug/deps/..`).
/// Build it first: `cargo build -p tribune` (`./scripts/test` does).
pub fn tribune_binary() -> Result<std::path::PathBuf, Error> {
    if let Some(p) = std::env::var_os("TRIBUNE_BIN").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().map_err(Error::io("locating the test executable"))?;
    let candidate = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("tribune"));
    match candidate {
        Some(p) if p.is_file() => Ok(p),
        _ => Err(Error::Io {
            what: format!(
                "finding the tribune binary beside {} (build it with `cargo build -p tribune`, or set TRIBUNE_BIN)",
                exe.display()
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        }),
    }
}
