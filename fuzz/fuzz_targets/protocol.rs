//! libFuzzer entry for `switchyard_fuzz::targets::protocol` (the properties are written there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::targets::protocol::check(data));
