//! Deliberately broken agent behaviour for tests that must be shown to catch a real bug: the
//! chaos harness's enforcement checker (`chaos/README.md`, "The checker catches bugs") and the
//! controllers' check of a migration target's evidence.
//!
//! A fault acts only when **both** hold: the crate was built with the `test-faults` cargo
//! feature (which no normal build enables: the `tribune` crate turns it on through a
//! dev-dependency, so only the binary `cargo test -p tribune` builds has it), and the
//! environment variable `TRIBUNE_TEST_FAULT` (the controllers' variable, comma-separated
//! names; each process acts on its own names only) names the fault. Without the feature,
//! [`active`] is the constant `false` and the variable is never read.

/// The faults a test can switch on in an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `TRIBUNE_TEST_FAULT=lift-caps-when-cut-off`: when the agent loses its controller link
    /// (`LinkEvent::Down`), it removes every enclave's CPU cap — the fail-open bug the
    /// "limits never lifted while cut off" invariant forbids.
    LiftCapsWhenCutOff,
    /// `TRIBUNE_TEST_FAULT=stale-move-evidence`: a migration target's `ready` carries evidence
    /// bound to the stream's nonce, not the migration's — a replay of what the waiting VM sent
    /// when it started, which the controllers must refuse (`cli/tests/migrate_live.rs`).
    StaleMoveEvidence,
}

impl Fault {
    /// The name `TRIBUNE_TEST_FAULT` uses.
    pub fn name(self) -> &'static str {
        match self {
            Fault::LiftCapsWhenCutOff => "lift-caps-when-cut-off",
            Fault::StaleMoveEvidence => "stale-move-evidence",
        }
    }
}

/// The variable that names the active faults (comma-separated).
pub const VAR: &str = "TRIBUNE_TEST_FAULT";

/// Whether this build can act on `TRIBUNE_TEST_FAULT` at all.
pub const COMPILED_IN: bool = cfg!(feature = "test-faults");

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
        let known = [Fault::LiftCapsWhenCutOff, Fault::StaleMoveEvidence];
        if on.iter().any(|f| known.iter().any(|k| k.name() == f)) {
            tracing::warn!(faults = %v, "TEST FAULTS ACTIVE: this agent is deliberately broken");
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
