//! What the provider manages (`policy`) and reads (`data`).

pub mod data;
pub mod policy;
