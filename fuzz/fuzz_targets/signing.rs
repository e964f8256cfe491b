//! libFuzzer entry for `switchyard_fuzz::targets::signing` (the properties are written there).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard_fuzz::targets::signing::check(data));
