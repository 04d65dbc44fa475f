//! `tribune-chaos` (DESIGN.md §3: `chaos/`): checking Tribune's invariants (DESIGN.md §6) under
//! faults: [`run`], the multi-process fault harness (controllers in network namespaces, faults
//! from a seed, histories checked by stateright's linearizability tester), and [`sim`], the
//! deterministic simulation of the attestation stream, the decision loop and plan delivery
//! (see `chaos/README.md`).

pub mod run;
pub mod sim;
