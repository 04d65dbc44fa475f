//! One module per top-level verb.

pub mod agent;
pub mod attest;
pub mod policy;
pub mod policy_lang;
