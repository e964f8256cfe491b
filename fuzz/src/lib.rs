//! Oracles the fuzz targets hold Switchyard's parsers to: independent encoders and checks,
//! written from what Django and Python do (django-session-format.md), not from the crate's
//! code, so that one mistake in both places is unlikely.
//!
//! `pyjson` encodes a decoded value the way Django's `JSONSerializer` writes it and
//! compares values with NaN equal to itself; `django` signs like Django's `Signer` with
//! the keys of `tests/django/make_fixtures.py`, so that cookies and session blobs made by
//! real Django (the seed corpora) verify in the targets; `json` reads a JSON object's
//! entries in document order, duplicates kept. `targets` holds the properties each fuzz
//! target checks, callable without libFuzzer.

pub mod django;
pub mod json;
pub mod pyjson;
pub mod targets;
