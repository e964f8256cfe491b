//! Writing a decoded session value back as Django's `JSONSerializer` writes it
//! (`json.dumps(obj, separators=(",", ":"))`: ASCII only, non-ASCII as `\uXXXX` with
//! surrogate pairs, `NaN` / `Infinity` literals), and comparing two decoded values.

use std::fmt::Write;

use switchyard::django::pyjson::{PyStr, Value};

/// The JSON text of `v`. A string with a lone surrogate (kept by the crate as U+FFFD plus a
/// flag) writes each U+FFFD as the lone escape `\udfff`, so it reads back as the same text
/// with the same flag.
pub fn dumps(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(digits) => out.push_str(digits),
        Value::Float(f) if f.is_nan() => out.push_str("NaN"),
        Value::Float(f) if f.is_infinite() => out.push_str(if *f > 0.0 { "Infinity" } else { "-Infinity" }),
        // Debug keeps a '.' or an exponent, so the text reads back as a float, and is exact.
        Value::Float(f) => write!(out, "{f:?}").expect("to a String"),
        Value::Str(s) => write_str(out, s),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, item)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_str(out: &mut String, s: &PyStr) {
    out.push('"');
    for c in s.text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{fffd}' if s.lone_surrogate => out.push_str("\\udfff"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(out, "\\u{unit:04x}").expect("to a String");
                }
            }
        }
    }
    out.push('"');
}

/// Structural equality where NaN equals NaN and 0.0 differs from -0.0 (bit equality).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::List(x), Value::List(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        _ => a == b,
    }
}

/// Nesting depth: 0 for a scalar, 1 for `[]`.
pub fn depth(v: &Value) -> usize {
    match v {
        Value::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Dict(pairs) => 1 + pairs.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// True when the value holds only what strict JSON (RFC 8259) and serde_json can carry:
/// finite floats, integers within 64 bits, no lone surrogate.
pub fn strict_json(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_finite(),
        Value::Int(d) => d.parse::<i64>().is_ok() || d.parse::<u64>().is_ok(),
        Value::Str(s) => !s.lone_surrogate,
        Value::List(items) => items.iter().all(strict_json),
        Value::Dict(pairs) => pairs.iter().all(|(k, v)| !k.lone_surrogate && strict_json(v)),
        Value::Null | Value::Bool(_) => true,
    }
}

/// True when the crate's value and serde_json's agree: same scalars (floats within an
/// ulp or two: serde_json's default float reading is not always correctly rounded),
/// same lists, and for objects the same keys with the *last* duplicate's value, as a
/// Python dict (and serde_json's map) keeps it.
pub fn agrees_with_serde(ours: &Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (ours, theirs) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Int(d), J::Number(n)) if n.is_i64() || n.is_u64() => *d == n.to_string(),
        // serde_json reads an integer past 64 bits as a float: nothing to compare exactly.
        (Value::Int(_), J::Number(n)) => n.is_f64(),
        (Value::Float(a), J::Number(n)) => n.as_f64().is_some_and(|b| (a - b).abs() <= a.abs() * 4.0 * f64::EPSILON),
        (Value::Str(a), J::String(b)) => a.as_str() == Some(b.as_str()),
        (Value::List(a), J::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| agrees_with_serde(a, b)),
        (Value::Dict(pairs), J::Object(map)) => {
            let obj = pairs.as_slice();
            let mut distinct: Vec<&str> = pairs.iter().filter_map(|(k, _)| k.as_str()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() == map.len()
                && map.iter().all(|(k, theirs)| {
                    switchyard::django::pyjson::get(obj, k).is_some_and(|ours| agrees_with_serde(ours, theirs))
                })
        }
        _ => false,
    }
}
