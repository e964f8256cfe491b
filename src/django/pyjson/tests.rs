use super::*;
use proptest::prelude::*;

fn p(s: &str) -> Result<Value, JsonError> {
    parse_latin1(s.as_bytes())
}

#[test]
fn python_constants_parse() {
    assert!(matches!(p("NaN"), Ok(Value::Float(f)) if f.is_nan()));
    assert_eq!(p("Infinity"), Ok(Value::Float(f64::INFINITY)));
    assert_eq!(p(" -Infinity\n"), Ok(Value::Float(f64::NEG_INFINITY)));
    assert!(p("-Inf").is_err());
    assert!(p("nan").is_err());
}

#[test]
fn lone_surrogates_are_accepted_but_never_equal() {
    let v = p(r#"{"a":"\ud800x"}"#).unwrap();
    let s = match get(v.as_object().unwrap(), "a") {
        Some(Value::Str(s)) => s.clone(),
        other => panic!("{other:?}"),
    };
    assert!(s.lone_surrogate);
    assert_eq!(s.as_str(), None);
    assert_eq!(p(r#""\ud83d\ude00""#).unwrap().as_str(), Some("\u{1f600}"));
    assert!(p(r#""\udc00\ud800""#).is_ok());
}

#[test]
fn huge_integers_keep_every_digit_up_to_pythons_limit() {
    let big = "9".repeat(4300);
    assert_eq!(p(&big), Ok(Value::Int(big.clone())));
    assert!(p(&"9".repeat(4301)).is_err());
    assert_eq!(p("-0"), Ok(Value::Int("0".into())));
    assert_eq!(p("1e400"), Ok(Value::Float(f64::INFINITY)));
}

#[test]
fn duplicate_keys_last_wins() {
    let v = p(r#"{"a":1,"b":2,"a":3}"#).unwrap();
    assert_eq!(get(v.as_object().unwrap(), "a"), Some(&Value::Int("3".into())));
}

#[test]
fn strictness_python_keeps() {
    for bad in [
        "",
        "{",
        "[1,]",
        "{\"a\":1,}",
        "01",
        "1.",
        ".5",
        "\"\u{1}\"",
        "\"\\x\"",
        "{'a':1}",
        "[1] x",
        "\u{feff}1",
        "+1",
        "1e",
    ] {
        assert!(p(bad).is_err(), "{bad:?} must be rejected");
    }
    assert_eq!(p("1.5E+2"), Ok(Value::Float(150.0)));
    assert!(p("[1 , 2 ]").is_ok());
}

#[test]
fn latin1_bytes_become_chars() {
    assert_eq!(parse_latin1(b"\"\xe9\"").unwrap().as_str(), Some("\u{e9}"));
}

#[test]
fn depth_is_bounded() {
    let deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
    assert!(p(&deep).is_err());
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(p(&ok).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_latin1(&bytes);
    }

    #[test]
    fn never_panics_on_jsonish_text(s in r#"[\[\]{}",:0-9eE.+\-\\u dNaIfity]{0,200}"#) {
        let _ = parse_latin1(s.as_bytes());
    }
}
