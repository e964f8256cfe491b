//! One module per fuzz target, each with `check(data)`: the properties an input must keep,
//! as assertions. `fuzz_targets/NAME.rs` hands libFuzzer's inputs to `check`, and
//! `tests/replay.rs` hands it the saved ones on stable Rust, so an input that once broke a
//! property stays a test.

pub mod config;
pub mod cookies;
pub mod protocol;
pub mod pyjson;
pub mod session;
pub mod signing;

/// Every target by name (the folder names under `corpus/`, `seeds/` and `regressions/`).
pub const ALL: [(&str, fn(&[u8])); 6] = [
    ("protocol", protocol::check),
    ("signing", signing::check),
    ("session", session::check),
    ("pyjson", pyjson::check),
    ("cookies", cookies::check),
    ("config", config::check),
];
