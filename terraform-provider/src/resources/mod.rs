//! What the provider manages (`policy`, `enclave`) and reads (`data`).

pub mod data;
pub mod enclave;
pub mod policy;
