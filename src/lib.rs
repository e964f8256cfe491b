//! Switchyard: a WebSocket front proxy for Django.
