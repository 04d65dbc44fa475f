//! Terraform's values as the provider sees them (cty values without their types) and their
//! two wire encodings: MessagePack (`DynamicValue.msgpack`: configuration, plans, state) and
//! JSON (`RawState.json`: state as stored, on upgrade).
//!
//! The MessagePack subset cty uses is small — nil, booleans, integers, floats, strings,
//! arrays, maps, and an extension value for "unknown" — so it is decoded and encoded here,
//! strictly and with bounds, rather than through a general-purpose crate: every byte that is
//! not part of that subset is a typed error, never a panic. Objects and maps share the map
//! encoding; the schema (see [`crate::schema`]) says which an attribute is.

use std::collections::BTreeMap;

/// Deepest nesting accepted when decoding (our schemas nest three levels at most).
pub const DEPTH_MAX: usize = 32;
/// Most elements in one array or map.
pub const ELEMENTS_MAX: usize = 100_000;

/// A value with its type left to the schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Not known until apply (`(known after apply)`).
    Unknown,
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
    List(Vec<Value>),
    /// An object or a map.
    Map(BTreeMap<String, Value>),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the value ends early (at byte {0})")]
    Truncated(usize),
    #[error("unsupported MessagePack marker 0x{marker:02x} at byte {at}")]
    Marker { marker: u8, at: usize },
    #[error("a map key at byte {0} is not a string")]
    KeyNotString(usize),
    #[error("a string at byte {0} is not UTF-8")]
    NotUtf8(usize),
    #[error("values nest deeper than {DEPTH_MAX} levels")]
    TooDeep,
    #[error("an array or map has {0} elements; at most {ELEMENTS_MAX}")]
    TooLong(usize),
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    #[error("invalid JSON: {0}")]
    Json(String),
}

impl Value {
    /// An attribute of an object (`Null` when absent).
    pub fn get(&self, name: &str) -> &Value {
        match self {
            Value::Map(m) => m.get(name).unwrap_or(&Value::Null),
            _ => &Value::Null,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Whether this value, or anything inside it, is unknown.
    pub fn has_unknown(&self) -> bool {
        match self {
            Value::Unknown => true,
            Value::List(l) => l.iter().any(Value::has_unknown),
            Value::Map(m) => m.values().any(Value::has_unknown),
            _ => false,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// A whole number (a float with no fraction counts).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }

    /// An object from `(attribute, value)` pairs.
    pub fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
        Value::Map(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }
}

// ---- MessagePack --------------------------------------------------------------------------

/// Decodes one MessagePack value; an empty input is null (Terraform sends none for "no value").
pub fn from_msgpack(bytes: &[u8]) -> Result<Value, DecodeError> {
    if bytes.is_empty() {
        return Ok(Value::Null);
    }
    let mut r = Reader { b: bytes, at: 0 };
    let v = r.value(0)?;
    if r.at != bytes.len() {
        return Err(DecodeError::Trailing(bytes.len() - r.at));
    }
    Ok(v)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(DecodeError::Truncated(self.at))?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or(DecodeError::Truncated(self.at))?;
        self.at = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        let l = self.uint(n)?;
        usize::try_from(l).map_err(|_| DecodeError::TooLong(usize::MAX))
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > DEPTH_MAX {
            return Err(DecodeError::TooDeep);
        }
        let at = self.at;
        let m = self.take(1)?[0];
        Ok(match m {
            0x00..=0x7f => Value::Int(i64::from(m)),
            0xe0..=0xff => Value::Int(i64::from(m as i8)),
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xcc => Value::Int(self.uint(1)? as i64),
            0xcd => Value::Int(self.uint(2)? as i64),
            0xce => Value::Int(self.uint(4)? as i64),
            0xcf => {
                let u = self.uint(8)?;
                i64::try_from(u).map_or(Value::Float(u as f64), Value::Int)
            }
            0xd0 => Value::Int(i64::from(self.uint(1)? as u8 as i8)),
            0xd1 => Value::Int(i64::from(self.uint(2)? as u16 as i16)),
            0xd2 => Value::Int(i64::from(self.uint(4)? as u32 as i32)),
            0xd3 => Value::Int(self.uint(8)? as i64),
            0xca => Value::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Value::Float(f64::from_bits(self.uint(8)?)),
            0xa0..=0xbf => self.str(usize::from(m & 0x1f), at)?,
            0xd9 => {
                let n = self.len(1)?;
                self.str(n, at)?
            }
            0xda => {
                let n = self.len(2)?;
                self.str(n, at)?
            }
            0xdb => {
                let n = self.len(4)?;
                self.str(n, at)?
            }
            0x90..=0x9f => self.array(usize::from(m & 0x0f), depth)?,
            0xdc => {
                let n = self.len(2)?;
                self.array(n, depth)?
            }
            0xdd => {
                let n = self.len(4)?;
                self.array(n, depth)?
            }
            0x80..=0x8f => self.map(usize::from(m & 0x0f), depth)?,
            0xde => {
                let n = self.len(2)?;
                self.map(n, depth)?
            }
            0xdf => {
                let n = self.len(4)?;
                self.map(n, depth)?
            }
            // Extensions: cty marks unknown values with one (type 0; type 12 carries
            // refinements, which this provider does not need).
            0xd4 => self.ext(1)?,
            0xd5 => self.ext(2)?,
            0xd6 => self.ext(4)?,
            0xd7 => self.ext(8)?,
            0xd8 => self.ext(16)?,
            0xc7 => {
                let n = self.len(1)?;
                self.ext(n)?
            }
            0xc8 => {
                let n = self.len(2)?;
                self.ext(n)?
            }
            0xc9 => {
                let n = self.len(4)?;
                self.ext(n)?
            }
            marker => return Err(DecodeError::Marker { marker, at }),
        })
    }

    fn ext(&mut self, n: usize) -> Result<Value, DecodeError> {
        self.take(1)?; // the extension type
        self.take(n)?;
        Ok(Value::Unknown)
    }

    fn str(&mut self, n: usize, at: usize) -> Result<Value, DecodeError> {
        let s = self.take(n)?;
        std::str::from_utf8(s)
            .map(|s| Value::String(s.to_string()))
            .map_err(|_| DecodeError::NotUtf8(at))
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        if n > ELEMENTS_MAX {
            return Err(DecodeError::TooLong(n));
        }
        let mut v = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            v.push(self.value(depth + 1)?);
        }
        Ok(Value::List(v))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Value, DecodeError> {
        if n > ELEMENTS_MAX {
            return Err(DecodeError::TooLong(n));
        }
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let at = self.at;
            let Value::String(k) = self.value(depth + 1)? else {
                return Err(DecodeError::KeyNotString(at));
            };
            m.insert(k, self.value(depth + 1)?);
        }
        Ok(Value::Map(m))
    }
}

/// Encodes a value as MessagePack (the shortest form of each length and integer).
pub fn to_msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(&mut out, v);
    out
}

fn write_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, m16: u8, m32: u8) {
    if n <= fix_max {
        out.push(fix | n as u8);
    } else if n <= usize::from(u16::MAX) {
        out.push(m16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(m32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn write(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Unknown => out.extend_from_slice(&[0xd4, 0, 0]),
        Value::Null => out.push(0xc0),
        Value::Bool(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Int(i) => match *i {
            0..=0x7f => out.push(*i as u8),
            -32..=-1 => out.push(*i as i8 as u8),
            i if i32::try_from(i).is_ok() => {
                out.push(0xd2);
                out.extend_from_slice(&(i as i32).to_be_bytes());
            }
            i => {
                out.push(0xd3);
                out.extend_from_slice(&i.to_be_bytes());
            }
        },
        Value::Float(f) => {
            out.push(0xcb);
            out.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::String(s) => {
            if s.len() < 32 {
                out.push(0xa0 | s.len() as u8);
            } else if s.len() <= 0xff {
                out.push(0xd9);
                out.push(s.len() as u8);
            } else {
                write_len(out, s.len(), 0, 0, 0xda, 0xdb);
            }
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(l) => {
            write_len(out, l.len(), 0x90, 15, 0xdc, 0xdd);
            l.iter().for_each(|e| write(out, e));
        }
        Value::Map(m) => {
            write_len(out, m.len(), 0x80, 15, 0xde, 0xdf);
            for (k, e) in m {
                write(out, &Value::String(k.clone()));
                write(out, e);
            }
        }
    }
}

// ---- JSON ---------------------------------------------------------------------------------

/// Decodes state stored as JSON (`RawState.json`).
pub fn from_json(bytes: &[u8]) -> Result<Value, DecodeError> {
    let j: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Json(e.to_string()))?;
    json_value(&j, 0)
}

fn json_value(j: &serde_json::Value, depth: usize) -> Result<Value, DecodeError> {
    use serde_json::Value as J;
    if depth > DEPTH_MAX {
        return Err(DecodeError::TooDeep);
    }
    Ok(match j {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => n
            .as_i64()
            .map(Value::Int)
            .unwrap_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN))),
        J::String(s) => Value::String(s.clone()),
        J::Array(a) => Value::List(
            a.iter()
                .map(|e| json_value(e, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, e)| Ok((k.clone(), json_value(e, depth + 1)?)))
                .collect::<Result<_, DecodeError>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        let mut m = BTreeMap::new();
        m.insert("name".to_string(), Value::string("acme-batch"));
        m.insert("source".to_string(), Value::string("x".repeat(70_000)));
        m.insert("version".to_string(), Value::Unknown);
        m.insert("gone".to_string(), Value::Null);
        m.insert(
            "numbers".to_string(),
            Value::List(
                [
                    0,
                    1,
                    127,
                    128,
                    255,
                    65_535,
                    -1,
                    -32,
                    -33,
                    -200,
                    i64::MAX,
                    i64::MIN,
                ]
                .into_iter()
                .map(Value::Int)
                .chain([Value::Float(0.5), Value::Bool(true), Value::Bool(false)])
                .collect(),
            ),
        );
        m.insert("mid".to_string(), Value::string("y".repeat(200)));
        Value::Map(m)
    }

    #[test]
    fn msgpack_round_trips() {
        let v = sample();
        assert_eq!(from_msgpack(&to_msgpack(&v)), Ok(v));
    }

    #[test]
    fn known_cty_encodings_decode() {
        // {"a": unknown, "b": "hi", "c": 300 as uint16, "d": nil}: as cty writes them.
        let bytes = [
            0x84, 0xa1, b'a', 0xd4, 0x00, 0x00, 0xa1, b'b', 0xa2, b'h', b'i', 0xa1, b'c', 0xcd,
            0x01, 0x2c, 0xa1, b'd', 0xc0,
        ];
        let v = from_msgpack(&bytes).unwrap();
        assert_eq!(v.get("a"), &Value::Unknown);
        assert_eq!(v.get("b").as_str(), Some("hi"));
        assert_eq!(v.get("c").as_i64(), Some(300));
        assert!(v.get("d").is_null());
        assert!(v.has_unknown());
        // A refined unknown (extension type 12) is unknown too.
        assert_eq!(
            from_msgpack(&[0xc7, 0x02, 0x0c, 0x81, 0x01]).unwrap(),
            Value::Unknown
        );
    }

    #[test]
    fn bad_input_is_a_typed_error_not_a_panic() {
        assert_eq!(from_msgpack(&[0xa5, b'a']), Err(DecodeError::Truncated(1)));
        assert_eq!(
            from_msgpack(&[0xc1]),
            Err(DecodeError::Marker {
                marker: 0xc1,
                at: 0
            })
        );
        assert_eq!(
            from_msgpack(&[0x81, 0x01, 0x02]),
            Err(DecodeError::KeyNotString(1))
        );
        assert_eq!(from_msgpack(&[0xa1, 0xff]), Err(DecodeError::NotUtf8(0)));
        assert_eq!(from_msgpack(&[0xc0, 0xc0]), Err(DecodeError::Trailing(1)));
        assert_eq!(
            from_msgpack(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::TooLong(u32::MAX as usize))
        );
        let deep: Vec<u8> = std::iter::repeat_n(0x91, DEPTH_MAX + 2)
            .chain([0xc0])
            .collect();
        assert_eq!(from_msgpack(&deep), Err(DecodeError::TooDeep));
        // Every prefix of a valid encoding fails cleanly.
        let full = to_msgpack(&sample());
        for n in 0..full.len().min(400) {
            let _ = from_msgpack(&full[..n]);
        }
    }

    #[test]
    fn json_state_decodes() {
        let v = from_json(br#"{"name":"a","version":3,"labels":{"k":"v"},"x":null}"#).unwrap();
        assert_eq!(v.get("version").as_i64(), Some(3));
        assert_eq!(v.get("labels").get("k").as_str(), Some("v"));
        assert!(from_json(b"{").is_err());
    }
}
