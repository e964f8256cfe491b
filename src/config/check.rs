//! The one place a value read from the file is checked against its bounds, and the one
//! shape of the message when it is out of them: file, line and column of the value (when
//! the user wrote it), the key, the value, and the smallest (or largest) value allowed.
//!
//! Every duration, size and count goes through [`Check::duration`], [`Check::size`] or
//! [`Check::count`] on its way from a section struct (what serde read) to the typed config
//! a module receives, so no value a user can write reaches a panic (a zero `interval`, an
//! `Instant` overflow, a buffer nobody can allocate).

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::time::Duration;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::units::{ByteSize, ConfigDuration};
use super::ConfigError;

/// No timer needs more than a year; longer ones overflow `Instant` arithmetic.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The smallest duration for a timer or timeout: a zero one would fire at once, or panic.
pub const MIN_TIMER: Duration = Duration::from_millis(1);

/// Reports rejected values against the text they came from.
pub(super) struct Check<'a> {
    origin: &'a str,
    text: &'a str,
    tree: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Check<'a> {
    /// `text` is the file as read; it locates keys for the messages.
    pub(super) fn new(origin: &'a str, text: &'a str) -> Self {
        Self { origin, text, tree: DeTable::parse(text).ok() }
    }

    /// A value the file may not hold: `key` is its dotted path ("websocket.ping_interval",
    /// "routes[0].max_message_size", `commands."chat.*".timeout`).
    pub(super) fn reject(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let at = self.locate(key).map(|offset| super::line_column(self.text, offset));
        ConfigError::Rejected { origin: self.origin.to_string(), at, key: key.to_string(), message: message.into() }
    }

    /// A timer or timeout: at least `min`, at most a year.
    pub(super) fn duration(&self, key: &str, value: ConfigDuration, min: Duration) -> Result<Duration, ConfigError> {
        self.within(key, value, ConfigDuration(min)..=ConfigDuration(MAX_DURATION)).map(|d| d.0)
    }

    /// A size in bytes within `range`.
    pub(super) fn size(&self, key: &str, value: ByteSize, range: RangeInclusive<u64>) -> Result<u64, ConfigError> {
        let (min, max) = range.into_inner();
        self.within(key, value, ByteSize(min)..=ByteSize(max)).map(|s| s.0)
    }

    /// A count within `range`.
    pub(super) fn count<T: PartialOrd + Display + Copy>(
        &self,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        self.within(key, value, range)
    }

    fn within<T: PartialOrd + Display + Copy>(
        &self,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError> {
        if value < *range.start() {
            return Err(
                self.reject(key, format!("{value} is too small: the smallest allowed value is {}", range.start()))
            );
        }
        if value > *range.end() {
            return Err(self.reject(key, format!("{value} is too large: the largest allowed value is {}", range.end())));
        }
        Ok(value)
    }

    /// Byte offset of the value at `key`, when the file spells it out.
    fn locate(&self, key: &str) -> Option<usize> {
        let tree = self.tree.as_ref()?;
        let mut table = tree.get_ref();
        let mut found: Option<&Spanned<DeValue>> = None;
        for segment in segments(key) {
            if let Some(value) = found {
                let DeValue::Table(inner) = value.get_ref() else { return None };
                table = inner;
            }
            let value = table.iter().find(|(k, _)| k.get_ref().as_ref() == segment.name).map(|(_, v)| v)?;
            found = Some(match segment.index {
                None => value,
                Some(i) => match value.get_ref() {
                    DeValue::Array(items) => items.get(i)?,
                    _ => return None,
                },
            });
        }
        found.map(|v| v.span().start)
    }
}

struct Segment<'k> {
    name: &'k str,
    index: Option<usize>,
}

/// Splits `a.b[2]."c.d"` into `a`, `b` (item 2), `c.d`.
fn segments(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    let mut rest = key;
    while !rest.is_empty() {
        let (part, tail) = match rest.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((name, tail)) => (name, tail),
                None => (quoted, ""),
            },
            None => {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        let (index, tail) = match tail.strip_prefix('[').and_then(|t| t.split_once(']')) {
            Some((n, tail)) => (n.parse().ok(), tail),
            None => (None, tail),
        };
        out.push(Segment { name: part, index });
        rest = tail.strip_prefix('.').unwrap_or(tail);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[websocket]\nping_interval = \"0s\"\n[[routes]]\npath = \"/a/\"\n[[routes]]\npath = \"/b/\"\nmax_message_size = \"0B\"\n[commands.\"chat.*\"]\ntimeout = \"0s\"\n";

    fn at(key: &str) -> Option<(usize, usize)> {
        let check = Check::new("t.toml", TEXT);
        match check.reject(key, "x") {
            ConfigError::Rejected { at, .. } => at,
            other => panic!("{other}"),
        }
    }

    #[test]
    fn keys_are_found_in_tables_arrays_of_tables_and_quoted_names() {
        assert_eq!(at("websocket.ping_interval"), Some((2, 17)));
        assert_eq!(at("routes[1].max_message_size"), Some((7, 20)));
        assert_eq!(at("commands.\"chat.*\".timeout"), Some((9, 11)));
        assert_eq!(at("websocket.idle_timeout"), None);
        assert_eq!(at("routes[5].path"), None);
    }

    #[test]
    fn bounds_name_the_key_the_value_and_the_limit() {
        let check = Check::new("t.toml", TEXT);
        let zero = ConfigDuration(Duration::ZERO);
        let err = check.duration("websocket.ping_interval", zero, MIN_TIMER).unwrap_err().to_string();
        assert_eq!(
            err,
            "t.toml:2:17: websocket.ping_interval: \"0s\" is too small: the smallest allowed value is \"1ms\""
        );
        let err = check.count("websocket.max_in_flight", 0usize, 1..=usize::MAX).unwrap_err().to_string();
        assert_eq!(err, "t.toml: websocket.max_in_flight: 0 is too small: the smallest allowed value is 1");
        let err = check.size("websocket.read_buffer_size", ByteSize(2 << 20), 256..=1 << 20).unwrap_err().to_string();
        assert!(err.ends_with("\"2MiB\" is too large: the largest allowed value is \"1MiB\""), "{err}");
    }
}
