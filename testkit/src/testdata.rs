//! The shared, read-only attestation test data outside the repository (real evidence from real
//! hardware): `$TRIBUNE_TESTDATA` (the `attestation` folder itself), else
//! `shared/testdata/attestation` beside the checkout (CI, `/work/<checkout>`) or one level up
//! (a worktree under `/work/wt/`).

use std::path::{Path, PathBuf};

/// The folder, found from a crate's `CARGO_MANIFEST_DIR`; `None` when it is nowhere.
pub fn attestation(manifest_dir: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TRIBUNE_TESTDATA").map(PathBuf::from) {
        if p.is_dir() {
            return Some(p);
        }
        eprintln!("TRIBUNE_TESTDATA={} is not a directory", p.display());
    }
    let repo = manifest_dir.join("..");
    ["../shared", "../../shared"]
        .iter()
        .map(|up| repo.join(up).join("testdata/attestation"))
        .find(|p| p.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_found_where_there_is_nothing() {
        let d = crate::TestDir::new("testdata");
        let deep = d.path().join("a/b/c");
        // Only when the variable is unset: it takes precedence by design.
        if std::env::var_os("TRIBUNE_TESTDATA").is_none() {
            assert_eq!(attestation(&deep), None);
        }
    }
}
