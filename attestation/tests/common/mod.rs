//! Locating the shared, read-only test data outside the repository.
//!
//! Order: `$TRIBUNE_TESTDATA` (the `attestation` folder itself), then
//! `<repo>/../shared/testdata/attestation` (CI layout, and /work/<checkout>), then
//! `<repo>/../../shared/testdata/attestation` (a worktree under /work/wt/).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn testdata() -> Option<PathBuf> {
    tribune_testkit::testdata::attestation(&manifest_dir())
}

/// The test data folder, or print `skipped: …` loudly and return from the test.
#[macro_export]
macro_rules! testdata_or_skip {
    () => {
        match common::testdata() {
            Some(p) => p,
            None => {
                eprintln!(
                    "\n*** skipped: attestation test data not found (set TRIBUNE_TESTDATA or \
                     place shared/ beside the repository) ***\n"
                );
                println!("skipped: attestation test data not found");
                return;
            }
        }
    };
}

pub fn read(dir: &Path, rel: &str) -> Vec<u8> {
    std::fs::read(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
