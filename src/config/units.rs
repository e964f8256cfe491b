//! Value types that config fields are written in: durations ("5s"), sizes ("1MiB") and
//! "one address or a list". Each validates in its `Deserialize`, so a bad value is reported
//! by toml with the line and column of the value itself.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration written as a number and a unit: "250ms", "5s", "2m", "1h". `Display` shows it
/// as TOML would, quoted ("5s").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

/// A size in bytes written as a number and a unit: "512B", "64KiB", "1MiB", "2GiB", "10MB".
/// `Display` shows it as TOML would, quoted ("1MiB").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

/// One socket address or a list of them (`listen = "127.0.0.1:8080"` or `listen = [...]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addrs(pub Vec<SocketAddr>);

const DURATION_HINT: &str = "a duration like \"250ms\", \"5s\", \"2m\" or \"1h\"";
const SIZE_HINT: &str = "a size like \"512B\", \"64KiB\", \"1MiB\" or \"2GiB\"";

// === impl ConfigDuration ===

impl ConfigDuration {
    /// Parses "250ms", "5s", "2m", "1h" (whole numbers only).
    pub fn parse(text: &str) -> Option<Self> {
        let (number, unit) = split_number(text)?;
        let duration = match unit {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.checked_mul(60)?),
            "h" => Duration::from_secs(number.checked_mul(3600)?),
            _ => return None,
        };
        Some(Self(duration))
    }

    /// Shortest exact spelling, used when the effective config is printed.
    fn spelled(&self) -> String {
        let ms = self.0.as_millis();
        match ms {
            _ if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
            _ if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
            _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
            _ => format!("{ms}ms"),
        }
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| de::Error::custom(format!("`{text}` is not {DURATION_HINT}")))
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.spelled())
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spelled())
    }
}

// === impl ByteSize ===

impl ByteSize {
    /// Parses "512B", "64KiB", "1MiB", "2GiB", "10KB", "10MB", "1GB".
    pub fn parse(text: &str) -> Option<Self> {
        let (number, unit) = split_number(text)?;
        let scale: u64 = match unit {
            "B" | "" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            _ => return None,
        };
        number.checked_mul(scale).map(Self)
    }

    /// The size as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(&self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    fn spelled(&self) -> String {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (scale, unit) in UNITS {
            if self.0 >= scale && self.0 % scale == 0 {
                return format!("{}{unit}", self.0 / scale);
            }
        }
        format!("{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).ok_or_else(|| de::Error::custom(format!("`{text}` is not {SIZE_HINT}")))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.spelled())
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.spelled())
    }
}

/// Splits "15MiB" into (15, "MiB"); None when there is no leading whole number.
fn split_number(text: &str) -> Option<(u64, &str)> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].trim()))
}

// === impl Addrs ===

impl<'de> Deserialize<'de> for Addrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AddrsVisitor;
        impl<'de> Visitor<'de> for AddrsVisitor {
            type Value = Addrs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like \"127.0.0.1:8080\" or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Addrs, E> {
                parse_addr(v).map(|a| Addrs(vec![a]))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Addrs, A::Error> {
                let mut out = Vec::new();
                while let Some(text) = seq.next_element::<String>()? {
                    out.push(parse_addr(&text)?);
                }
                Ok(Addrs(out))
            }
        }
        d.deserialize_any(AddrsVisitor)
    }
}

impl Serialize for Addrs {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|a| a.to_string()))
    }
}

fn parse_addr<E: de::Error>(text: &str) -> Result<SocketAddr, E> {
    text.parse().map_err(|_| {
        E::custom(format!("`{text}` is not an address: write IP:PORT, like \"127.0.0.1:8080\" or \"[::1]:8080\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        assert_eq!(ConfigDuration::parse("250ms"), Some(ConfigDuration(Duration::from_millis(250))));
        assert_eq!(ConfigDuration::parse("5s"), Some(ConfigDuration(Duration::from_secs(5))));
        assert_eq!(ConfigDuration::parse("2m"), Some(ConfigDuration(Duration::from_secs(120))));
        assert_eq!(ConfigDuration::parse("1h"), Some(ConfigDuration(Duration::from_secs(3600))));
        assert_eq!(ConfigDuration::parse("5"), None);
        assert_eq!(ConfigDuration::parse("s"), None);
        assert_eq!(ConfigDuration::parse("1.5s"), None);
    }

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!(ByteSize::parse("1MiB"), Some(ByteSize(1 << 20)));
        assert_eq!(ByteSize::parse("16MiB"), Some(ByteSize(16 << 20)));
        assert_eq!(ByteSize::parse("10KB"), Some(ByteSize(10_000)));
        assert_eq!(ByteSize::parse("7"), Some(ByteSize(7)));
        assert_eq!(ByteSize::parse("1 GiB"), Some(ByteSize(1 << 30)));
        assert_eq!(ByteSize::parse("1PiB"), None);
        assert_eq!(ByteSize::parse("99999999999999999999GiB"), None);
    }

    #[test]
    fn values_print_back_in_their_shortest_form() {
        assert_eq!(ConfigDuration(Duration::from_secs(90)).spelled(), "90s");
        assert_eq!(ConfigDuration(Duration::from_secs(120)).spelled(), "2m");
        assert_eq!(ConfigDuration(Duration::from_millis(1500)).spelled(), "1500ms");
        assert_eq!(ByteSize(1 << 20).spelled(), "1MiB");
        assert_eq!(ByteSize(1000).spelled(), "1000B");
    }
}
