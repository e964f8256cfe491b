//! `[[static]]`: folders of files served without Django (`collectstatic` output). Each entry
//! maps a URL prefix onto a directory; the first matching prefix wins. What is served and
//! how (validators, ranges, precompressed siblings, cache lifetimes, what is refused) is
//! `static_files`' business; this file only checks what the user wrote.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::units::ConfigDuration;
use super::ConfigError;

/// WhiteNoise's `max_age` for files without a content hash in their name: a deploy that
/// changes `robots.txt` reaches browsers within a minute, and a page's burst of requests
/// costs one revalidation.
pub const DEFAULT_STATIC_MAX_AGE: Duration = Duration::from_secs(60);

/// One validated `[[static]]` entry.
#[derive(Clone, Debug)]
pub struct StaticConfig {
    /// The URL prefix, starting and ending with `/` ("/static/").
    pub prefix: String,
    /// The directory the prefix maps onto; it existed when the config was read.
    pub dir: PathBuf,
    /// How long browsers may reuse a file whose name carries no content hash.
    pub max_age: Duration,
    /// Serve files reached through symlinks that lead out of `dir`.
    pub follow_symlinks: bool,
}

/// One `[[static]]` entry as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StaticSection {
    /// The URL prefix served from `dir`, starting and ending with "/", like Django's
    /// STATIC_URL ("/static/"). Requests under it never reach Django: a missing file is a
    /// 404 here (Django's own static view would answer 404 too). Required.
    pub prefix: String,
    /// The directory served under `prefix`, like Django's STATIC_ROOT (where
    /// `manage.py collectstatic` writes). Relative paths start at the config file's
    /// folder. It must exist. Required.
    pub dir: PathBuf,
    /// How long browsers may reuse a file whose name has no content hash (names like
    /// "app.1a2b3c4d5e6f.css", which ManifestStaticFilesStorage writes, are cached for a
    /// year as immutable); "0s" makes them revalidate every time. Default: "1m".
    #[serde(default = "default_max_age")]
    pub max_age: ConfigDuration,
    /// Serve files reached through a symlink that leads out of `dir` (what
    /// `collectstatic --link` writes). When false such a file is a 404; symlinks that stay
    /// inside `dir` are always followed. Default: false.
    #[serde(default)]
    pub follow_symlinks: bool,
}

fn default_max_age() -> ConfigDuration {
    ConfigDuration(DEFAULT_STATIC_MAX_AGE)
}

impl StaticSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        self.dir = super::anchored(base, &self.dir);
    }

    /// `key` is this entry's dotted path ("static[0]").
    pub(super) fn validate(&self, check: &Check, key: &str) -> Result<StaticConfig, ConfigError> {
        let prefix = &self.prefix;
        let well_formed = prefix.len() > 1
            && prefix.starts_with('/')
            && prefix.ends_with('/')
            && !prefix.contains("//")
            && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b))
            && !prefix.split('/').any(|segment| segment == "." || segment == "..");
        if !well_formed {
            return Err(check.reject(
                &format!("{key}.prefix"),
                format!(
                    "`{prefix}` is not a static prefix: write a path that starts and ends with \"/\", like \
                     \"/static/\" (letters, digits, \"-._~\"; not \"/\" alone, which would take every URL from Django)"
                ),
            ));
        }
        if !self.dir.is_dir() {
            return Err(check.reject(
                &format!("{key}.dir"),
                format!(
                    "`{}` is not a directory: write the folder Django's collectstatic fills (STATIC_ROOT), \
                     or run `manage.py collectstatic` first",
                    self.dir.display()
                ),
            ));
        }
        let max_age = check.duration(&format!("{key}.max_age"), self.max_age, Duration::ZERO)?;
        Ok(StaticConfig {
            prefix: prefix.clone(),
            dir: self.dir.clone(),
            max_age,
            follow_symlinks: self.follow_symlinks,
        })
    }
}

/// Two entries with the same prefix: the second could never serve a file.
pub(super) fn check_prefixes(statics: &[StaticConfig], check: &Check) -> Result<(), ConfigError> {
    for (i, entry) in statics.iter().enumerate() {
        if let Some(first) = statics[..i].iter().position(|earlier| earlier.prefix == entry.prefix) {
            return Err(check.reject(
                &format!("static[{i}].prefix"),
                format!("`{}` is already the prefix of static[{first}]: give each [[static]] its own", entry.prefix),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{parse, Config, ConfigError, DEFAULT_STATIC_MAX_AGE};

    const MINIMAL: &str = "\n[server]\nlisten = [\"127.0.0.1:8080\"]\n[upstream]\nurl = \"http://127.0.0.1:8000\"\n";
    fn with_static(entry: &str) -> (tempfile::TempDir, Result<Config, ConfigError>) {
        let base = tempfile::tempdir().unwrap();
        std::fs::create_dir(base.path().join("collected")).unwrap();
        let env: HashMap<&str, &str> = HashMap::new();
        let text = format!("{MINIMAL}[[static]]\n{entry}");
        let parsed = parse(&text, "switchyard.toml", base.path(), &env);
        (base, parsed)
    }

    #[test]
    fn a_static_entry_is_anchored_at_the_config_folder_with_its_defaults() {
        let (base, parsed) = with_static("prefix = \"/static/\"\ndir = \"collected\"\n");
        let config = parsed.unwrap();
        assert_eq!(config.statics.len(), 1);
        assert_eq!(config.statics[0].prefix, "/static/");
        assert_eq!(config.statics[0].dir, base.path().join("collected"));
        assert_eq!(config.statics[0].max_age, DEFAULT_STATIC_MAX_AGE);
        assert!(!config.statics[0].follow_symlinks);
    }

    #[test]
    fn a_static_prefix_must_start_and_end_with_a_slash() {
        for prefix in ["static/", "/static", "/", "", "//", "/a//b/", "/../", "/st atic/", "/%73tatic/"] {
            let (_base, parsed) = with_static(&format!("prefix = \"{prefix}\"\ndir = \"collected\"\n"));
            let text = parsed.unwrap_err().to_string();
            assert!(text.starts_with("switchyard.toml:7:10: static[0].prefix: "), "{prefix:?}: {text}");
            assert!(text.contains("like \"/static/\""), "{text}");
        }
    }

    #[test]
    fn a_static_dir_that_does_not_exist_is_rejected_with_what_to_write() {
        let (_base, parsed) = with_static("prefix = \"/static/\"\ndir = \"missing\"\n");
        let text = parsed.unwrap_err().to_string();
        assert!(text.starts_with("switchyard.toml:8:7: static[0].dir: "), "{text}");
        assert!(text.contains("is not a directory: write the folder Django's collectstatic fills"), "{text}");
    }

    #[test]
    fn two_static_entries_with_one_prefix_are_rejected() {
        let entry = "prefix = \"/static/\"\ndir = \"collected\"\n";
        let (_base, parsed) = with_static(&format!("{entry}[[static]]\n{entry}"));
        let text = parsed.unwrap_err().to_string();
        assert!(text.contains("static[1].prefix: `/static/` is already the prefix of static[0]"), "{text}");
    }
}
