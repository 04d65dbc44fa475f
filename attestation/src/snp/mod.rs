//! AMD SEV-SNP: report parsing ([`report`]), certificate sources ([`certs`]) and
//! verification ([`verify`]).
//!
//! What we do beyond the `sev` crate (see docs/attestation.md): we verify the signature over
//! the raw input bytes (not a re-encoded copy), accept reports with a zeroed CHIP_ID
//! (VLEK / MASK_CHIP_ID), check validity dates at a given time, and compare the VEK's TCB and
//! hardware-ID extensions with the report.

pub mod certs;
pub mod report;
pub mod verify;

pub use certs::{DiskCache, KdsFetcher, OfflineKds, load_certs, parse_cert_table};
pub use report::{Product, SigningKey, SnpReport, TcbVersion};
pub use verify::{SnpOutcome, SnpVerifier};
