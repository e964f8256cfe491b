//! Django's signing envelope against an independent oracle: values signed by
//! `django.core.signing.dumps` itself under Django 4.2, 5.2 and 6.x (`signing.json`, made
//! by `scripts/session-fixtures`), with and without compression, under several keys and
//! salts. Switchyard must load every one, refuse it under another salt or key, apply
//! `max_age` as Django does, and (uncompressed) sign the same text to the same bytes.
//! `verdicts` are Django's own answers from `signing.loads`, with `time.time()` set by the
//! fixture, on hostile values (a valid HMAC over a bad timestamp or payload, tampered
//! signatures), on good ones at the edges of `max_age`, and under rotated keys: Switchyard
//! must give the same answer at the same instant.

mod support;

use serde::Deserialize;
use support::session_fixtures::{root, VERSIONS};
use switchyard::django::pyjson::Value as PyValue;
use switchyard::django::signing::{Secret, Signer, SigningError};

#[derive(Deserialize)]
struct Vectors {
    django: String,
    timestamp: i64,
    vectors: Vec<Vector>,
    verdicts: Vec<Verdict>,
}

/// What Django's `signing.loads(signed, key, salt, max_age, fallback_keys)` said at `now`.
#[derive(Deserialize)]
struct Verdict {
    case: String,
    key: String,
    fallbacks: Vec<String>,
    salt: String,
    signed: String,
    max_age: Option<f64>,
    now: f64,
    django: DjangoSays,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "lowercase")]
enum DjangoSays {
    /// The value, as Python's JSON text.
    Ok(String),
    /// `SignatureExpired`, `BadSignature`, or the class of whatever else it raised (which
    /// SessionBase.decode turns into an empty session).
    Error(String),
}

#[derive(Deserialize)]
struct Vector {
    key: String,
    salt: String,
    compress: bool,
    /// Whether Django's output carries the compression flag (it compresses only when that
    /// saves more than a byte).
    compressed: bool,
    value: serde_json::Value,
    json: String,
    signed: String,
}

fn load(version: &str) -> Vectors {
    let path = root().join(version).join("signing.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/session-fixtures", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// Our decoded value as serde_json, to compare with what Django was asked to sign.
fn plain(v: &PyValue) -> serde_json::Value {
    match v {
        PyValue::Null => serde_json::Value::Null,
        PyValue::Bool(b) => (*b).into(),
        PyValue::Int(text) => serde_json::from_str(text).unwrap(),
        PyValue::Float(f) => (*f).into(),
        PyValue::Str(s) => s.as_str().expect("no lone surrogates in the vectors").into(),
        PyValue::List(items) => items.iter().map(plain).collect(),
        PyValue::Dict(pairs) => pairs
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().to_owned(), plain(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn signer(v: &Vector) -> Signer {
    Signer::new(&v.salt, &Secret::new(v.key.clone()), &[])
}

/// Runs `check` over every vector of every version; fails listing each disagreement.
fn every_vector(check: impl Fn(&Vector, f64) -> Result<(), String>) {
    let mut failures = Vec::new();
    let mut total = 0;
    for version in VERSIONS {
        let doc = load(version);
        for v in &doc.vectors {
            total += 1;
            if let Err(e) = check(v, doc.timestamp as f64) {
                failures.push(format!(
                    "[Django {}] key {:?} salt {:?} compress {}: {e}",
                    doc.django, v.key, v.salt, v.compress
                ));
            }
        }
    }
    assert!(total >= 3 * 100, "only {total} vectors: are the fixtures complete?");
    assert!(failures.is_empty(), "{} of {total} vectors:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn every_value_django_signed_loads_to_that_value() {
    every_vector(|v, ts| {
        let got = signer(v).loads(&v.signed, None, ts).map_err(|e| e.to_string())?;
        let got = plain(&got);
        (got == v.value).then_some(()).ok_or_else(|| format!("loaded {got}, Django signed {}", v.value))
    });
}

#[test]
fn some_vectors_are_compressed_and_some_are_not() {
    let doc = load("django6");
    assert!(doc.vectors.iter().any(|v| v.compressed), "no compressed vector: the zlib path is untested");
    assert!(doc.vectors.iter().any(|v| v.compress && !v.compressed), "no vector too short to compress");
}

#[test]
fn another_salt_or_key_refuses_every_vector() {
    every_vector(|v, ts| {
        let other_salt = Signer::new(&format!("{}x", v.salt), &Secret::new(v.key.clone()), &[]);
        let other_key = Signer::new(&v.salt, &Secret::new(format!("{}x", v.key)), &[]);
        match (other_salt.loads(&v.signed, None, ts), other_key.loads(&v.signed, None, ts)) {
            (Err(SigningError::BadSignature), Err(SigningError::BadSignature)) => Ok(()),
            other => Err(format!("expected BadSignature twice, got {other:?}")),
        }
    });
}

#[test]
fn the_key_may_be_a_fallback() {
    every_vector(|v, ts| {
        let rotated = Signer::new(&v.salt, &Secret::new("the-new-key"), &[Secret::new(v.key.clone())]);
        rotated.loads(&v.signed, None, ts).map(|_| ()).map_err(|e| e.to_string())
    });
}

#[test]
fn max_age_refuses_only_past_it() {
    every_vector(|v, ts| {
        let s = signer(v);
        s.loads(&v.signed, Some(100.0), ts + 100.0).map_err(|e| format!("at max_age: {e}"))?;
        match s.loads(&v.signed, Some(100.0), ts + 101.0) {
            Err(SigningError::Expired { .. }) => Ok(()),
            other => Err(format!("a second past max_age: {other:?}")),
        }
    });
}

#[test]
fn uncompressed_dumps_is_byte_for_byte_djangos() {
    every_vector(|v, ts| {
        if v.compressed {
            return Ok(());
        }
        let ours = signer(v).dumps(&v.json, ts as i64, v.compress);
        (ours == v.signed).then_some(()).ok_or_else(|| format!("we sign {ours}, Django {}", v.signed))
    });
}

#[test]
fn compressed_dumps_compresses_when_django_does_and_loads_back() {
    every_vector(|v, ts| {
        if !v.compressed {
            return Ok(());
        }
        let ours = signer(v).dumps(&v.json, ts as i64, true);
        if !ours.starts_with('.') {
            return Err(format!("Django compressed, we did not: {ours}"));
        }
        let back = plain(&signer(v).loads(&ours, None, ts).map_err(|e| e.to_string())?);
        (back == v.value).then_some(()).ok_or_else(|| format!("loaded back {back}"))
    });
}

/// Ours in Django's terms: the value, `SignatureExpired`, `BadSignature`, or (for what
/// Django raises something else on, a malformed value behind a valid HMAC) `other`.
fn our_verdict(v: &Verdict) -> Result<PyValue, &'static str> {
    let fallbacks: Vec<Secret> = v.fallbacks.iter().cloned().map(Secret::new).collect();
    let signer = Signer::new(&v.salt, &Secret::new(v.key.clone()), &fallbacks);
    signer.loads(&v.signed, v.max_age, v.now).map_err(|e| match e {
        SigningError::Expired { .. } => "SignatureExpired",
        SigningError::BadSignature | SigningError::NoSeparator => "BadSignature",
        SigningError::Malformed(_) => "other",
    })
}

#[test]
fn every_verdict_django_gave_at_its_instant_is_ours() {
    let mut failures = Vec::new();
    let mut total = 0;
    for version in VERSIONS {
        let doc = load(version);
        for v in &doc.verdicts {
            total += 1;
            let ours = our_verdict(v);
            let agree = match (&v.django, &ours) {
                (DjangoSays::Ok(text), Ok(value)) => {
                    switchyard::django::pyjson::parse_latin1(text.as_bytes()).as_ref() == Ok(value)
                }
                (DjangoSays::Error(class), Err(ours)) if class == "SignatureExpired" || class == "BadSignature" => {
                    class == ours
                }
                (DjangoSays::Error(_), Err(ours)) => *ours == "other",
                _ => false,
            };
            if !agree {
                failures.push(format!(
                    "[Django {}] {} (max_age {:?}, now ts{:+}): Django {:?}, ours {ours:?}",
                    doc.django,
                    v.case,
                    v.max_age,
                    v.now - doc.timestamp as f64,
                    v.django
                ));
            }
        }
    }
    assert!(total >= 3 * 300, "only {total} verdicts: are the fixtures complete?");
    assert!(failures.is_empty(), "{} of {total} verdicts differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_verdicts_cover_every_outcome() {
    let doc = load("django6");
    let outcome = |v: &Verdict| match &v.django {
        DjangoSays::Ok(_) => "ok".to_owned(),
        DjangoSays::Error(c) if c == "SignatureExpired" || c == "BadSignature" => c.clone(),
        DjangoSays::Error(_) => "other".to_owned(),
    };
    for want in ["ok", "SignatureExpired", "BadSignature", "other"] {
        assert!(doc.verdicts.iter().any(|v| outcome(v) == want), "no verdict is {want}");
    }
}
