//! `[buffering]`: what gunicorn's sync workers need from a front proxy. Request bodies are
//! read whole before Django is contacted, and responses are read as fast as Django writes
//! them, so a slow or stalled browser never holds a worker. Memory first, then one unlinked
//! temp file per body, all bounded (nginx's proxy_request_buffering and proxy_buffering).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::check::Check;
use super::units::ByteSize;
use super::ConfigError;

/// nginx's client_body_buffer_size on 64-bit machines: a form post fits, an upload spills.
pub const DEFAULT_REQUEST_MEMORY: u64 = 16 << 10;
/// About nginx's proxy_buffer_size plus proxy_buffers (8 × 4k/8k): a page fits in memory.
pub const DEFAULT_RESPONSE_MEMORY: u64 = 64 << 10;
/// nginx's proxy_max_temp_file_size (1024m).
pub const DEFAULT_MAX_RESPONSE_TEMP_FILE: u64 = 1 << 30;
/// All temp files together; a cap, not a reservation. Small, because `/tmp` is often a
/// tmpfs (memory): point `temp_dir` at a disk before raising it.
pub const DEFAULT_MAX_TEMP_DISK: u64 = 1 << 30;
/// Below this a memory buffer holds less than one read from a socket.
const MIN_MEMORY: u64 = 1 << 10;

/// The validated `[buffering]` section, shared by every worker's proxy.
#[derive(Clone, Debug)]
pub struct BufferingConfig {
    /// Read request bodies whole before contacting the upstream.
    pub requests: bool,
    /// Read responses as fast as the upstream writes them.
    pub responses: bool,
    /// Bytes of one request body kept in memory before the rest goes to a temp file.
    pub request_memory: usize,
    /// Bytes of one response kept in memory before the rest goes to a temp file.
    pub response_memory: usize,
    /// Most bytes of one response held in its temp file at once (0: no temp file).
    pub max_response_temp_file: u64,
    /// Most bytes all temp files together may hold (0: no temp files).
    pub max_temp_disk: u64,
    /// Where temp files are made (and unlinked at once); an existing directory.
    pub temp_dir: PathBuf,
}

/// The `[buffering]` section as written.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BufferingSection {
    /// Read each request body whole (memory, then a temp file) before Django is contacted,
    /// so a slow upload never holds a gunicorn worker; Django then always sees a
    /// `Content-Length` (nginx's proxy_request_buffering). A route can turn it off with
    /// `buffering = false`. Default: true.
    #[serde(default = "default_true")]
    pub requests: bool,
    /// Read each response as fast as Django writes it (memory, then a temp file) and send
    /// it at the browser's pace, so a slow download never holds a gunicorn worker (nginx's
    /// proxy_buffering). A route can turn it off with `buffering = false`, and Django per
    /// response with the header `X-Accel-Buffering: no` (which is not passed on).
    /// Default: true.
    #[serde(default = "default_true")]
    pub responses: bool,
    /// Bytes of one request body kept in memory; the rest goes to a temp file (nginx's
    /// client_body_buffer_size). At least "1KiB". Default: "16KiB".
    #[serde(default = "default_request_memory")]
    pub request_memory: ByteSize,
    /// Bytes of one response kept in memory; the rest goes to a temp file (nginx's
    /// proxy_buffers). At least "1KiB". Default: "64KiB".
    #[serde(default = "default_response_memory")]
    pub response_memory: ByteSize,
    /// Most bytes of one response held in its temp file; past it the rest streams at the
    /// browser's pace (nginx's proxy_max_temp_file_size). "0B": no temp file.
    /// Default: "1GiB".
    #[serde(default = "default_max_response_temp_file")]
    pub max_response_temp_file: ByteSize,
    /// Most bytes all temp files together may hold. A request body that does not fit is
    /// refused with 503; a response that does not fit streams. Default: "1GiB".
    #[serde(default = "default_max_temp_disk")]
    pub max_temp_disk: ByteSize,
    /// Where temp files are made; each is unlinked as soon as it is made, so nothing is
    /// left behind. Put it on a disk, not a tmpfs. Default: the system's temp folder
    /// ($TMPDIR, else /tmp).
    pub temp_dir: Option<PathBuf>,
}

fn default_true() -> bool {
    true
}
fn default_request_memory() -> ByteSize {
    ByteSize(DEFAULT_REQUEST_MEMORY)
}
fn default_response_memory() -> ByteSize {
    ByteSize(DEFAULT_RESPONSE_MEMORY)
}
fn default_max_response_temp_file() -> ByteSize {
    ByteSize(DEFAULT_MAX_RESPONSE_TEMP_FILE)
}
fn default_max_temp_disk() -> ByteSize {
    ByteSize(DEFAULT_MAX_TEMP_DISK)
}

impl Default for BufferingSection {
    fn default() -> Self {
        toml::from_str("").expect("every [buffering] key has a default")
    }
}

impl BufferingSection {
    pub(super) fn anchor_paths(&mut self, base: &Path) {
        if let Some(dir) = &mut self.temp_dir {
            *dir = super::anchored(base, dir);
        }
    }

    pub(super) fn validate(&self, check: &Check) -> Result<BufferingConfig, ConfigError> {
        let memory = |key: &str, value| {
            let size = check.size(&format!("buffering.{key}"), value, MIN_MEMORY..=u64::from(u32::MAX))?;
            Ok::<_, ConfigError>(usize::try_from(size).unwrap_or(usize::MAX))
        };
        let temp_dir = self.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        if !temp_dir.is_dir() {
            return Err(check.reject(
                "buffering.temp_dir",
                format!("`{}` is not a directory: create it or name another", temp_dir.display()),
            ));
        }
        Ok(BufferingConfig {
            requests: self.requests,
            responses: self.responses,
            request_memory: memory("request_memory", self.request_memory)?,
            response_memory: memory("response_memory", self.response_memory)?,
            max_response_temp_file: self.max_response_temp_file.0,
            max_temp_disk: self.max_temp_disk.0,
            temp_dir,
        })
    }
}
