//! Dependency-license gate: Tribune is Apache-2.0 and must not link GPL/AGPL/LGPL code.
//!
//! Reads `cargo metadata` for the whole workspace and fails naming every package whose licence
//! expression has no permissive alternative.

use std::process::Command;

/// Licence identifiers that are copyleft in a way an Apache-2.0 binary cannot ship.
const FORBIDDEN: &[&str] = &["GPL", "AGPL", "LGPL", "SSPL", "EUPL", "CC-BY-NC"];

fn alternative_ok(alt: &str) -> bool {
    let alt = alt.trim().trim_matches(|c| c == '(' || c == ')');
    !FORBIDDEN.iter().any(|f| {
        alt.split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
            .any(|word| word.starts_with(f))
    })
}

/// An SPDX expression passes when at least one `OR` alternative is free of forbidden licences.
fn expression_ok(expr: &str) -> bool {
    expr.replace('/', " OR ").split(" OR ").any(alternative_ok)
}

#[test]
fn forbidden_licence_expressions_are_recognised() {
    assert!(expression_ok("MIT OR Apache-2.0"));
    assert!(expression_ok("Apache-2.0 WITH LLVM-exception"));
    assert!(expression_ok("MIT/Apache-2.0"));
    assert!(expression_ok("GPL-3.0 OR MIT"));
    assert!(!expression_ok("AGPL-3.0-only"));
    assert!(!expression_ok("GPL-2.0-or-later"));
    assert!(!expression_ok("LGPL-2.1 AND MIT"));
}

#[test]
fn no_dependency_is_gpl_or_agpl() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(manifest_dir().join(".."))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let packages = meta["packages"].as_array().expect("packages array");
    assert!(
        packages.len() > 5,
        "metadata lists the workspace and its dependencies"
    );
    let mut bad = Vec::new();
    for p in packages {
        let name = p["name"].as_str().unwrap_or("?");
        let version = p["version"].as_str().unwrap_or("?");
        match p["license"].as_str() {
            Some(expr) if expression_ok(expr) => {}
            Some(expr) => bad.push(format!("{name} {version}: {expr}")),
            // A package with only a licence file must be looked at by a person.
            None if p["license_file"].is_string() => {
                bad.push(format!("{name} {version}: licence file only, review it"))
            }
            None => bad.push(format!("{name} {version}: no licence declared")),
        }
    }
    assert!(
        bad.is_empty(),
        "dependencies with licences Tribune cannot ship:\n{}",
        bad.join("\n")
    );
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
