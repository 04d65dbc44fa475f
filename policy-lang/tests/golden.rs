//! Golden tests for diagnostics: each `golden/NAME.tribune` holds one mistake; its rendered
//! diagnostics are `golden/NAME.txt` and its JSON diagnostics `golden/NAME.json`.
//! Regenerate with `UPDATE_GOLDEN=1 cargo test -p tribune-policy --test golden`.

use std::collections::BTreeSet;

#[test]
fn diagnostics_match_golden_files() {
    let dir = manifest_dir().join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tribune"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "at least twenty distinct mistakes");
    let mut codes = BTreeSet::new();
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name");
        // Bytes, as the CLI reads them: a file that is not UTF-8 is a diagnostic too.
        let bytes = std::fs::read(input).expect("read input");
        let src = String::from_utf8_lossy(&bytes).into_owned();
        let out = tribune_policy::check_bytes(name, &bytes);
        assert!(
            !out.diagnostics.is_empty(),
            "{name}: expected at least one diagnostic"
        );
        codes.extend(out.diagnostics.iter().map(|d| d.code.clone()));
        let text = tribune_policy::render_diagnostics(name, &src, &out.diagnostics);
        let json = serde_json::to_string_pretty(&out.diagnostics).expect("json") + "\n";
        for (ext, actual) in [("txt", &text), ("json", &json)] {
            let path = input.with_extension(ext);
            if update {
                std::fs::write(&path, actual).expect("write golden");
                continue;
            }
            let expected = std::fs::read_to_string(&path).unwrap_or_default();
            if &expected != actual {
                failures.push(format!(
                    "{}:\n--- expected\n{expected}\n--- actual\n{actual}",
                    path.display()
                ));
            }
        }
        // JSON diagnostics round-trip through serde.
        let back: Vec<tribune_policy::Diagnostic> =
            serde_json::from_str(&json).expect("parse json back");
        assert_eq!(back, out.diagnostics);
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
    assert!(
        codes.len() >= 20,
        "only {} distinct diagnostic codes: {codes:?}",
        codes.len()
    );
}

/// This package's directory, read at run time (`cargo test` sets it) so a test binary reused
/// from a shared target dir built in another checkout still finds this checkout's files.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
