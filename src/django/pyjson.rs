//! A JSON reader with Python's `json.loads` semantics, for session payloads
//! (django-session-format.md §1 `JSONSerializer` and §8 item 8).
//!
//! Django decodes the payload bytes as latin-1 and calls `json.loads`, which is looser than
//! strict JSON: `NaN`, `Infinity` and `-Infinity` are values, `\ud800` (a lone surrogate) is
//! a valid escape, integers have no size limit (up to Python's 4300-digit conversion limit),
//! and a duplicate key silently replaces the earlier one. A strict parser would call such a
//! session corrupt where Django logs the user in.
//!
//! Bounded: nesting deeper than [`MAX_DEPTH`] is an error (Python's recursion limit is near
//! 1000 frames, so only a hostile payload signed with the real key could tell the
//! difference); the input is already bounded by the caller. Never panics.

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 512;
/// CPython's `sys.int_info.default_max_str_digits`: a longer integer literal makes
/// `json.loads` raise, so the session decodes to `{}` in Django.
pub const PY_INT_MAX_STR_DIGITS: usize = 4300;

/// A decoded value. Only what the session bridge reads is made convenient.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    /// An integer of any size, as canonical decimal text (`-0` is `0`).
    Int(String),
    Float(f64),
    Str(PyStr),
    List(Vec<Value>),
    /// Key/value pairs in reading order; a later duplicate shadows an earlier one (`get`
    /// takes the last), which is what Python's dict does.
    Dict(Vec<(PyStr, Value)>),
}

/// A Python `str`. Lone surrogates cannot live in a Rust `String`: they are replaced by
/// U+FFFD and `lone_surrogate` is set, so such a string never compares equal to one we
/// look for and never encodes to UTF-8 (where Python would raise).
#[derive(Debug, Clone, PartialEq)]
pub struct PyStr {
    pub text: String,
    pub lone_surrogate: bool,
}

impl PyStr {
    /// The text, unless it holds a lone surrogate.
    pub fn as_str(&self) -> Option<&str> {
        (!self.lone_surrogate).then_some(self.text.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {at}: {what}")]
pub struct JsonError {
    pub at: usize,
    pub what: &'static str,
}

impl Value {
    pub fn as_object(&self) -> Option<&[(PyStr, Value)]> {
        match self {
            Value::Dict(pairs) => Some(pairs),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => s.as_str(),
            _ => None,
        }
    }
    /// Python truthiness (`if not value:`).
    pub fn is_truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(s) => s != "0",
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.text.is_empty(),
            Value::List(v) => !v.is_empty(),
            Value::Dict(v) => !v.is_empty(),
        }
    }
}

/// Look a key up in a decoded object (the entry kept is the last duplicate's value).
pub fn get<'a>(obj: &'a [(PyStr, Value)], key: &str) -> Option<&'a Value> {
    obj.iter().rev().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// `json.loads(bytes.decode("latin-1"))`.
pub fn parse_latin1(input: &[u8]) -> Result<Value, JsonError> {
    let mut p = Parser { s: input, i: 0 };
    p.ws();
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("extra data"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { at: self.i, what }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Python's JSON whitespace is exactly these four.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn lit(&mut self, word: &[u8], v: Value) -> Result<Value, JsonError> {
        if self.s.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(v)
        } else {
            Err(self.err("expecting value"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, JsonError> {
        match self.peek() {
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'n') => self.lit(b"null", Value::Null),
            Some(b't') => self.lit(b"true", Value::Bool(true)),
            Some(b'f') => self.lit(b"false", Value::Bool(false)),
            Some(b'N') => self.lit(b"NaN", Value::Float(f64::NAN)),
            Some(b'I') => self.lit(b"Infinity", Value::Float(f64::INFINITY)),
            Some(b'-') if self.s.get(self.i + 1) == Some(&b'I') => {
                self.lit(b"-Infinity", Value::Float(f64::NEG_INFINITY))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.err("expecting value")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Value, JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => {
                self.i = start;
                return Err(self.err("expecting value"));
            }
        }
        let mut is_float = false;
        if self.peek() == Some(b'.') && matches!(self.s.get(self.i + 1), Some(b'0'..=b'9')) {
            self.i += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                self.i = save; // not an exponent after all: Python leaves the 'e' unread
            } else {
                is_float = true;
            }
        }
        // The matched text is ASCII by construction.
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("number"))?;
        if is_float {
            // Python's float(): overflow gives inf, not an error.
            return text.parse::<f64>().map(Value::Float).map_err(|_| self.err("bad float"));
        }
        let (neg, digits) = match text.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, text),
        };
        if digits.len() > PY_INT_MAX_STR_DIGITS {
            return Err(self.err("integer exceeds Python's 4300-digit limit"));
        }
        Ok(Value::Int(if neg && digits != "0" { text.to_owned() } else { digits.to_owned() }))
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let quad = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("invalid \\uXXXX escape"))?;
        let mut v = 0u32;
        for &c in quad {
            let d = (c as char).to_digit(16).ok_or_else(|| self.err("invalid \\uXXXX escape"))?;
            v = v * 16 + d;
        }
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<PyStr, JsonError> {
        self.i += 1; // opening quote
        let mut out = PyStr { text: String::new(), lone_surrogate: false };
        loop {
            let c = self.peek().ok_or_else(|| self.err("unterminated string"))?;
            self.i += 1;
            match c {
                b'"' => return Ok(out),
                0x00..=0x1f => {
                    self.i -= 1;
                    return Err(self.err("invalid control character"));
                }
                b'\\' => {
                    let e = self.peek().ok_or_else(|| self.err("unterminated string"))?;
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let mut cp = hi;
                            if (0xd800..0xdc00).contains(&hi) && self.s.get(self.i..self.i + 2) == Some(b"\\u") {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    cp = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
                                } else {
                                    self.i = save;
                                }
                            }
                            match char::from_u32(cp) {
                                Some(ch) => ch,
                                None => {
                                    out.lone_surrogate = true;
                                    '\u{fffd}'
                                }
                            }
                        }
                        _ => {
                            self.i -= 2;
                            return Err(self.err("invalid \\escape"));
                        }
                    };
                    out.text.push(ch);
                }
                // latin-1: each byte is the code point of the same value.
                _ => out.text.push(c as char),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        let mut items = Vec::new();
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(Value::List(items));
        }
        loop {
            self.ws();
            items.push(self.value(depth)?);
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(Value::List(items));
                }
                _ => return Err(self.err("expecting ',' delimiter")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nested too deeply"));
        }
        self.i += 1;
        let mut pairs: Vec<(PyStr, Value)> = Vec::new();
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(Value::Dict(pairs));
        }
        loop {
            self.ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expecting property name enclosed in double quotes"));
            }
            let key = self.string()?;
            self.ws();
            if self.peek() != Some(b':') {
                return Err(self.err("expecting ':' delimiter"));
            }
            self.i += 1;
            self.ws();
            let v = self.value(depth)?;
            // Kept in reading order; `get` takes the last duplicate, as a dict would.
            pairs.push((key, v));
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::Dict(pairs));
                }
                _ => return Err(self.err("expecting ',' delimiter")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
