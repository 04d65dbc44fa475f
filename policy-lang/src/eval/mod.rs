//! Evaluation: compiled policy + facts → decision. Pure, deterministic, and allocation-free:
//! it reads the flat arenas of [`CompiledPolicy`](crate::CompiledPolicy) and writes a `Copy` [`Decision`].
//!
//! Missing facts are NaN: every comparison with them is false, so a rule over a fact the
//! caller did not supply does not fire.
//!
//! - `facts`: what an evaluation reads ([`Facts`]).
//! - `decision`: what it decides ([`Decision`], [`TalkDecision`]).
//! - `evaluate`: one policy ([`CompiledPolicy::evaluate`](crate::CompiledPolicy::evaluate),
//!   [`CompiledPolicy::talk_to`](crate::CompiledPolicy::talk_to)).
//! - `policy_set`: several policies in precedence order ([`PolicySet`]).
//! - `report`: the documented JSON and the CLI's text ([`Decision::to_json`],
//!   [`PolicySet::report_json`]).

mod decision;
mod evaluate;
mod facts;
mod policy_set;
mod report;

pub use decision::{
    ActionOutcome, AttestOutcome, AttestViolation, Decision, Origin, ReclaimOutcome, Setting,
    SourceKind, TalkDecision,
};
pub use facts::{AttestationFacts, Enclave, Events, Facts, MsgFacts, UsageFact, Utilization};
pub use policy_set::{PolicySet, StandingPriority};
