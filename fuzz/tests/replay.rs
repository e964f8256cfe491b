//! Replays every saved input through its target's `check` on stable Rust, no libFuzzer:
//! `regressions/TARGET/` (each input that once broke a property: a crash turned into a
//! test), `seeds/TARGET/` and the committed, minimised `corpus/TARGET/`. scripts/test runs
//! it, so a fixed bug stays fixed and a change that breaks what the fuzzer already covered
//! fails here first.

use std::fs;
use std::panic;
use std::path::Path;

use switchyard_fuzz::targets;

/// The saved inputs of `target` that fail its check, as "folder/file: message".
fn failures(target: &str) -> (usize, Vec<String>) {
    let check = targets::ALL.iter().find(|(name, _)| *name == target).expect("a target").1;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut replayed = 0;
    let mut failed = Vec::new();
    for folder in ["regressions", "seeds", "corpus"] {
        let Ok(entries) = fs::read_dir(root.join(folder).join(target)) else { continue };
        let mut paths: Vec<_> = entries.map(|e| e.expect("a readable folder").path()).collect();
        paths.sort();
        for path in paths {
            let data = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            replayed += 1;
            if let Err(panic) = panic::catch_unwind(|| check(&data)) {
                let message = (panic.downcast_ref::<String>().cloned())
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("{folder}/{target}/{}: {message}", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    (replayed, failed)
}

fn replay(target: &str) {
    let (replayed, failed) = failures(target);
    assert!(replayed > 0, "no saved inputs for {target}");
    assert!(failed.is_empty(), "{} of {replayed} saved {target} inputs fail:\n{}", failed.len(), failed.join("\n"));
}

#[test]
fn saved_client_frames_keep_the_protocol_properties() {
    replay("protocol");
}

#[test]
fn saved_signed_values_keep_the_signing_properties() {
    replay("signing");
}

#[test]
fn saved_session_blobs_keep_the_session_properties() {
    replay("session");
}

#[test]
fn saved_payloads_keep_the_pyjson_properties() {
    replay("pyjson");
}

#[test]
fn saved_cookie_headers_keep_the_cookie_properties() {
    replay("cookies");
}

#[test]
fn saved_config_files_keep_the_config_properties() {
    replay("config");
}
