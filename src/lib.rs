//! Switchyard: a WebSocket front proxy for Django.
pub mod django;
