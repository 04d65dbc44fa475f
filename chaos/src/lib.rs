//! `tribune-chaos` (DESIGN.md §3: `chaos/`): checking Tribune's invariants (DESIGN.md §6) under
//! faults. Today: [`sim`], the deterministic simulation of the attestation stream, the
//! decision loop and plan delivery. The multi-process fault harness of issue 19 is not built
//! yet (see `chaos/README.md`).

pub mod sim;
