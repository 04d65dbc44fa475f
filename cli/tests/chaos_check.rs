//! `tribune chaos check FILE`: the checkers re-run offline on a recorded history (no root).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tribune");

fn check(lines: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let f = dir.path().join("history.jsonl");
    std::fs::write(&f, lines.join("\n")).expect("write the history");
    let out = Command::new(BIN)
        .args(["chaos", "check"])
        .arg(&f)
        .output()
        .expect("run tribune");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

const WRITE: &str = r#"{"t_ms":1,"process":1,"client":1,"node":1,"key":"k1","kind":"invoke","op":{"f":"write","value":7}}"#;
const WRITTEN: &str = r#"{"t_ms":2,"process":1,"client":1,"node":1,"key":"k1","kind":"ok","op":{"f":"write","value":7},"ret":{"r":"written","version":1}}"#;

fn read(t: u64, process: u64, client: u64, version: u64, value: Option<u64>) -> [String; 2] {
    let v = value.map_or("null".to_string(), |v| v.to_string());
    [
        format!(
            r#"{{"t_ms":{t},"process":{process},"client":{client},"node":2,"key":"k1","kind":"invoke","op":{{"f":"read"}}}}"#
        ),
        format!(
            r#"{{"t_ms":{},"process":{process},"client":{client},"node":2,"key":"k1","kind":"ok","op":{{"f":"read"}},"ret":{{"r":"read","version":{version},"value":{v}}}}}"#,
            t + 1
        ),
    ]
}

#[test]
fn a_linearizable_history_passes() {
    let r = read(5, 2, 0, 1, Some(7));
    let (ok, text) = check(&[WRITE, WRITTEN, &r[0], &r[1]]);
    assert!(ok, "{text}");
    assert!(text.contains("anomalies 0"), "{text}");
}

#[test]
fn a_stale_read_after_an_acknowledged_write_fails_with_the_anomaly() {
    // The write was acknowledged before the read began; the read saw the policy missing.
    let r = read(5, 2, 1, 0, None);
    let fin = read(9, 3, 0, 1, Some(7));
    let (ok, text) = check(&[WRITE, WRITTEN, &r[0], &r[1], &fin[0], &fin[1]]);
    assert!(!ok, "{text}");
    assert!(text.contains("not linearizable: k1"), "{text}");
}

#[test]
fn a_lost_write_is_reported_and_a_cut_history_says_it_cannot_judge() {
    // The final read (client 0) finds version 0: the acknowledged write is gone.
    let fin = read(9, 3, 0, 0, None);
    let (ok, text) = check(&[WRITE, WRITTEN, &fin[0], &fin[1]]);
    assert!(!ok, "{text}");
    assert!(text.contains("lost write: k1"), "{text}");
    // Without final reads no write is judged lost.
    let (ok, text) = check(&[WRITE, WRITTEN]);
    assert!(ok, "{text}");
    assert!(text.contains("lost writes not judged"), "{text}");
}

#[test]
fn a_bad_file_is_refused_with_where() {
    let (ok, text) = check(&[WRITE, "{not json"]);
    assert!(!ok);
    assert!(text.contains("history.jsonl:2"), "{text}");
}
