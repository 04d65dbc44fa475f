//! The log's canonical JSON: compact, every object's keys sorted bytewise, strings escaped as
//! JSON requires and nothing else (non-ASCII as UTF-8), numbers as `serde_json` writes them.
//! A log leaf is the canonical JSON of its entry; a receipt is signed over the canonical JSON
//! of its body and stored as its canonical JSON.

use serde_json::Value;

/// Appends the canonical JSON of `v` to `out`.
pub fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                string(k, out);
                out.push(b':');
                if let Some(child) = m.get(k) {
                    write(child, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, child) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(child, out);
            }
            out.push(b']');
        }
        Value::String(s) => string(s, out),
        // null, booleans and numbers: serde_json's own text.
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

/// The canonical JSON of `v`.
pub fn to_vec(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out);
    out
}

/// A JSON string as `serde_json` writes it.
pub fn string(s: &str, out: &mut Vec<u8>) {
    // Serialising a &str cannot fail; the fallback is never taken.
    out.extend_from_slice(
        serde_json::to_string(s)
            .unwrap_or_else(|_| "\"\"".into())
            .as_bytes(),
    );
}

/// True when a value holds a non-integer number (leaf format 2 holds none).
pub fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(m) => m.values().any(has_float),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_compact_utf8() {
        let v: Value =
            serde_json::from_str(r#"{"b": [1, 2.5, null], "a": {"z": "é\"", "y": true}}"#)
                .unwrap_or(Value::Null);
        assert_eq!(
            String::from_utf8(to_vec(&v)).unwrap_or_default(),
            r#"{"a":{"y":true,"z":"é\""},"b":[1,2.5,null]}"#
        );
        assert!(has_float(&v));
    }
}
