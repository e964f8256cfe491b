//! Switchyard: a WebSocket front proxy for Django.
//!
//! The library holds everything; `main.rs` only loads config, starts, and waits for a signal.
//! Module layout follows the design's diagram: `server` accepts, `router` decides, `proxy`
//! forwards plain HTTP to Django.

pub mod config;
