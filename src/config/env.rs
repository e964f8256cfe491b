//! Where config reads the outside world: environment variables (through the [`Env`] trait so
//! tests pass a map) and secret files. A [`Secret`] never prints its value.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Environment lookups, so tests can pass a map instead of touching the process environment.
pub trait Env {
    /// The variable's value, or `None` when it is unset.
    fn var(&self, key: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, key: &str) -> Option<String> {
        std::env::var(key).ok()
    }
}

impl Env for HashMap<String, String> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).cloned()
    }
}

impl Env for HashMap<&str, &str> {
    fn var(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| v.to_string())
    }
}

/// A secret value read from an environment variable or a file; `Debug` and `Display` mask it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value that must never be printed.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it (signing, a connection string).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be read; names the variable or file, never the value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The `*_env` key names a variable that is not set.
    #[error("environment variable `{0}` is not set")]
    EnvUnset(String),
    /// The `*_file` key names a file that cannot be read.
    #[error("cannot read secret file `{path}`: {source}")]
    FileUnreadable { path: String, source: std::io::Error },
    /// The variable or file is empty.
    #[error("`{0}` is empty")]
    Empty(String),
}

/// Reads a secret from the variable `var` (when given) or the file `file`; trailing newlines
/// of a file are trimmed because editors add them.
pub fn read_secret(env: &dyn Env, var: Option<&str>, file: Option<&Path>) -> Result<Option<Secret>, SecretError> {
    let (value, source) = match (var, file) {
        (Some(var), _) => (env.var(var).ok_or_else(|| SecretError::EnvUnset(var.into()))?, var.to_string()),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| SecretError::FileUnreadable { path: path.display().to_string(), source })?;
            (text.trim_end_matches(['\n', '\r']).to_string(), path.display().to_string())
        }
        (None, None) => return Ok(None),
    };
    if value.is_empty() {
        return Err(SecretError::Empty(source));
    }
    Ok(Some(Secret(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_comes_from_the_named_variable() {
        let env: HashMap<&str, &str> = [("KEY", "abc")].into();
        let got = read_secret(&env, Some("KEY"), None).unwrap().unwrap();
        assert_eq!(got.expose(), "abc");
        assert!(matches!(read_secret(&env, Some("NOPE"), None), Err(SecretError::EnvUnset(v)) if v == "NOPE"));
    }

    #[test]
    fn secret_file_loses_its_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        let env: HashMap<&str, &str> = HashMap::new();
        let got = read_secret(&env, None, Some(&path)).unwrap().unwrap();
        assert_eq!(got.expose(), "s3cret");
    }
}
