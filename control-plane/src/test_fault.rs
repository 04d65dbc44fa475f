//! Deliberately broken behaviour for the chaos harness's checker tests (`chaos/README.md`):
//! the checkers must be shown to catch a real bug.
//!
//! A fault acts only when **both** hold: the crate was built with the `test-faults` cargo
//! feature (which no normal build enables: the `tribune` crate turns it on through a
//! dev-dependency, so only the binary `cargo test -p tribune` builds has it), and the
//! environment variable `TRIBUNE_TEST_FAULT` names the fault. Without the feature,
//! [`active`] is the constant `false` and the variable is never read. A controller with an
//! active fault says so at start (`warn`).

/// The faults a test can switch on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `TRIBUNE_TEST_FAULT=stale-reads`: linearizable reads skip the read barrier and are served
    /// from this controller's state machine as it is (what `?stale=true` does), so a deposed
    /// or partitioned controller answers old values.
    StaleReads,
    /// `TRIBUNE_TEST_FAULT=clock-offset`: the wall clock this controller reads ([`wall_now`])
    /// is offset by the signed milliseconds in the file `TRIBUNE_TEST_CLOCK_FILE` names,
    /// re-read every 50 ms, so a test can jump one controller's clock while it runs (never
    /// the machine's clock).
    ClockOffset,
    /// `TRIBUNE_TEST_FAULT=no-pre-vote`: elections by openraft's own timer (no pre-vote, the
    /// behaviour before `node/election.rs`), so a cut-off follower raises its term and deposes
    /// the leader when it comes back (`cli/tests/failover.rs` shows its check catches that).
    NoPreVote,
}

impl Fault {
    /// The name `TRIBUNE_TEST_FAULT` uses.
    pub fn name(self) -> &'static str {
        match self {
            Fault::StaleReads => "stale-reads",
            Fault::ClockOffset => "clock-offset",
            Fault::NoPreVote => "no-pre-vote",
        }
    }
}

/// The variable that names the active faults (comma-separated).
pub const VAR: &str = "TRIBUNE_TEST_FAULT";

/// Whether `fault` is switched on in this process.
#[cfg(feature = "test-faults")]
pub fn active(fault: Fault) -> bool {
    static ON: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ON.get_or_init(|| {
        let v = std::env::var(VAR).unwrap_or_default();
        let on: Vec<String> = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !on.is_empty() {
            tracing::warn!(faults = %v, "TEST FAULTS ACTIVE: this controller is deliberately broken");
        }
        on
    })
    .iter()
    .any(|f| f == fault.name())
}

/// Whether `fault` is switched on in this process: never, without the `test-faults` feature.
#[cfg(not(feature = "test-faults"))]
pub fn active(_fault: Fault) -> bool {
    false
}

/// The file holding the clock offset in ms (`clock-offset`).
pub const CLOCK_FILE_VAR: &str = "TRIBUNE_TEST_CLOCK_FILE";

/// The wall clock as this controller reads it: the system's, offset under `clock-offset`.
#[cfg(feature = "test-faults")]
pub fn wall_now() -> std::time::SystemTime {
    use std::sync::Mutex;
    use std::time::{Duration, Instant, SystemTime};
    static CACHE: Mutex<Option<(Instant, i64)>> = Mutex::new(None);
    let now = SystemTime::now();
    if !active(Fault::ClockOffset) {
        return now;
    }
    let offset_ms = {
        let mut g = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        match *g {
            Some((at, ms)) if at.elapsed() < Duration::from_millis(50) => ms,
            _ => {
                let ms = std::env::var(CLOCK_FILE_VAR)
                    .ok()
                    .and_then(|f| std::fs::read_to_string(f).ok())
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .unwrap_or(0);
                *g = Some((Instant::now(), ms));
                ms
            }
        }
    };
    let d = Duration::from_millis(offset_ms.unsigned_abs());
    if offset_ms >= 0 {
        now.checked_add(d).unwrap_or(now)
    } else {
        now.checked_sub(d).unwrap_or(now)
    }
}

/// The wall clock as this controller reads it: the system's.
#[cfg(not(feature = "test-faults"))]
#[inline]
pub fn wall_now() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// Whether this build can act on `TRIBUNE_TEST_FAULT` at all.
pub const COMPILED_IN: bool = cfg!(feature = "test-faults");
