//! Switchyard: a WebSocket front proxy for Django.
//!
//! The library holds everything; `main.rs` only loads config, starts, and waits for a signal.
//! The modules follow the design's diagram: `server` accepts downstream connections (plain
//! and TLS), `router` decides what each request is, `proxy` forwards plain HTTP to Django,
//! `client_script` serves the browser client.

pub mod admin;
pub mod body;
pub mod broker;
pub mod client_script;
pub mod clock;
pub mod commands;
pub mod config;
pub mod devcert;
pub mod django;
pub mod downstream;
mod errors;
pub mod hub;
pub mod protocol;
pub mod proxy;
pub mod router;
pub mod routes;
pub mod server;
pub mod static_files;
pub mod ws;

pub use errors::{error_chain, find_cause};
