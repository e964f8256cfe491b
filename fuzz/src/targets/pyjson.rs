//! The Python-lenient JSON reader (`django::pyjson::parse_latin1`) on any payload bytes.
//!
//! Properties: it never panics; what it reads, written back as Django's `JSONSerializer`
//! writes it, reads back to the same value and the same text (lone surrogates, NaN, big
//! integers and duplicate keys included); on ASCII text it agrees with serde_json, a
//! strict RFC 8259 reader: whatever serde_json reads, it reads to the same value, and
//! whatever it reads that strict JSON can carry (finite floats, 64-bit integers, no lone
//! surrogate, shallow nesting), serde_json reads too.

use switchyard::django::pyjson::{self, MAX_DEPTH};

use crate::pyjson::{agrees_with_serde, depth, dumps, same, strict_json};

/// serde_json's own nesting limit (128), with room to spare.
const SERDE_DEPTH: usize = 100;

/// Checks the properties above on one input; panics when one does not hold.
pub fn check(data: &[u8]) {
    let ours = pyjson::parse_latin1(data);
    if let Ok(v) = &ours {
        assert!(depth(v) <= MAX_DEPTH);
        let text = dumps(v);
        let again =
            pyjson::parse_latin1(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} does not read back: {e}"));
        assert!(same(v, &again), "{text:?} read back as {again:?}, not {v:?}");
        assert_eq!(dumps(&again), text);
    }
    if !data.is_ascii() {
        return;
    }
    let theirs = serde_json::from_slice::<serde_json::Value>(data);
    match (&ours, &theirs) {
        (Ok(v), Ok(j)) => assert!(agrees_with_serde(v, j), "{v:?} vs serde_json's {j:?}"),
        (Err(e), Ok(j)) => panic!("refused ({e}) what serde_json reads as {j}"),
        (Ok(v), Err(e)) => {
            assert!(!strict_json(v) || depth(v) > SERDE_DEPTH, "read {v:?}, which serde_json refuses: {e}")
        }
        (Err(_), Err(_)) => {}
    }
}
