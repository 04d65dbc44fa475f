//! Test-only hold points in live migration, so the fault tests (`cli/tests/migrate_faults.rs`)
//! stop a migration at a chosen step deterministically — and kill an agent or the leader
//! there — instead of racing it with sleeps.
//!
//! A hold acts only when **both** hold: the crate was built with the `test-faults` cargo
//! feature (which no normal build enables: the `tribune` crate turns it on through a
//! dev-dependency, as it does the controller's `test_fault`), and the file
//! `DATA_DIR/test-hold` names the step (comma-separated names). Then the agent, at that step,
//! writes `DATA_DIR/test-hold.STEP.reached` and waits while the file still names the step
//! (the test rewrites or removes it to release). Without the feature, [`hold`] returns at once
//! and reads no file.

use std::path::Path;

/// The steps an agent can be held at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hold {
    /// Target: a `MigrateIn` arrived; its VM is not started yet.
    MigrateIn,
    /// Source: QEMU sent the RAM and waits before switching over (`pause-before-switchover`,
    /// status `pre-switchover`): the transfer is under way, nothing committed.
    Transfer,
    /// Source: QEMU completed (the source is paused, the target holds the whole state), but
    /// the agent has not reported `completed`, so nothing is committed yet.
    Switchover,
    /// Source or target: the `MigrationEnd` of the migration the enclave takes part in here
    /// arrived and is not acted on yet.
    End,
}

impl Hold {
    /// The name the hold file uses.
    pub fn name(self) -> &'static str {
        match self {
            Hold::MigrateIn => "migrate-in",
            Hold::Transfer => "transfer",
            Hold::Switchover => "switchover",
            Hold::End => "end",
        }
    }
}

/// The file naming the steps to hold at, in the agent's data directory.
pub const HOLD_FILE: &str = "test-hold";

/// Whether this build acts on the hold file at all.
pub const COMPILED_IN: bool = cfg!(feature = "test-faults");

/// The marker an agent writes when it reaches `h`.
pub fn reached_file(data_dir: &Path, h: Hold) -> std::path::PathBuf {
    data_dir.join(format!("{HOLD_FILE}.{}.reached", h.name()))
}

/// Whether the hold file names `h` (never, without the feature).
pub fn named(data_dir: &Path, h: Hold) -> bool {
    COMPILED_IN
        && std::fs::read_to_string(data_dir.join(HOLD_FILE))
            .is_ok_and(|s| s.split(',').any(|x| x.trim() == h.name()))
}

/// Waits at `h` while the hold file names it (returns at once otherwise).
pub async fn hold(data_dir: &Path, h: Hold) {
    if !named(data_dir, h) {
        return;
    }
    tracing::warn!(
        hold = h.name(),
        "TEST HOLD: waiting at this migration step while {HOLD_FILE} names it"
    );
    if let Err(e) = std::fs::write(reached_file(data_dir, h), b"") {
        tracing::warn!("test hold marker: {e}");
    }
    while named(data_dir, h) {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tracing::warn!(hold = h.name(), "TEST HOLD released");
}
