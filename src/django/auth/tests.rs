use super::*;
use crate::django::pyjson::parse_latin1;

const KEY: &str = "django-insecure-vectors-+3l@7x!k#v9q(2m_e&w=z8r^t1y$u%i*o0p-a5s6d4f";
const ALICE_PW: &str = "pbkdf2_sha256$1500000$vectorsalt0123456789AB$tj4KeAWv7ayz9CNvPy0qV1g6mmZn7TBYm7zul+haGzU=";
const ALICE_HASH: &str = "46e71aa4dc26325db0764062d24d5fb37893d3353cb24e695acc04b6d07c4b5e";
const MODEL_BACKEND: &str = "django.contrib.auth.backends.ModelBackend";

fn policy(fallbacks: &[&str]) -> AuthPolicy {
    let fb: Vec<Secret> = fallbacks.iter().map(|s| Secret::new(*s)).collect();
    AuthPolicy::new(vec![MODEL_BACKEND.into()], true, PkType::Int, &Secret::new(KEY), &fb)
}

fn alice_row() -> UserRow {
    UserRow {
        id: "1".into(),
        username: "alice".into(),
        password: ALICE_PW.into(),
        is_active: true,
        is_staff: false,
        is_superuser: false,
    }
}

fn session(json: &str) -> Value {
    parse_latin1(json.as_bytes()).unwrap()
}

fn alice_session() -> Value {
    session(&format!(
        r#"{{"_auth_user_id":"1","_auth_user_backend":"{MODEL_BACKEND}","_auth_user_hash":"{ALICE_HASH}"}}"#
    ))
}

#[test]
fn auth_hash_matches_the_format_doc() {
    let p = policy(&[]);
    assert_eq!(std::str::from_utf8(&auth_hash(&p.hash_keys[0], ALICE_PW)).unwrap(), ALICE_HASH);
}

#[test]
fn good_session_is_the_user() {
    let p = policy(&[]);
    let c = p.claims(&alice_session()).unwrap();
    assert_eq!(p.verify(&c, Some(alice_row())).user().unwrap().username, "alice");
}

#[test]
fn hash_under_a_fallback_key_is_the_user() {
    let p =
        AuthPolicy::new(vec![MODEL_BACKEND.into()], true, PkType::Int, &Secret::new("new-key"), &[Secret::new(KEY)]);
    let c = p.claims(&alice_session()).unwrap();
    assert!(p.verify(&c, Some(alice_row())).user().is_some());
}

#[test]
fn changed_password_is_hash_mismatch() {
    let p = policy(&[]);
    let c = p.claims(&alice_session()).unwrap();
    let row = UserRow { password: "pbkdf2_sha256$other".into(), ..alice_row() };
    assert_eq!(p.verify(&c, Some(row)), Identity::Anonymous(Anonymous::HashMismatch));
}

#[test]
fn inactive_user_is_anonymous_unless_the_backend_allows_it() {
    let p = policy(&[]);
    let c = p.claims(&alice_session()).unwrap();
    let row = UserRow { is_active: false, ..alice_row() };
    assert_eq!(p.verify(&c, Some(row.clone())), Identity::Anonymous(Anonymous::Inactive));
    let allow = "django.contrib.auth.backends.AllowAllUsersModelBackend";
    let p = AuthPolicy::new(vec![allow.into()], true, PkType::Int, &Secret::new(KEY), &[]);
    let s =
        session(&format!(r#"{{"_auth_user_id":"1","_auth_user_backend":"{allow}","_auth_user_hash":"{ALICE_HASH}"}}"#));
    assert!(p.verify(&p.claims(&s).unwrap(), Some(row)).user().is_some());
}

#[test]
fn checks_run_in_djangos_order() {
    let p = policy(&[]);
    assert_eq!(p.claims(&session("{}")), Err(Anonymous::NoUserId));
    assert_eq!(p.claims(&session("[]")), Err(Anonymous::Corrupt));
    // The id converts before the backend is read.
    assert_eq!(p.claims(&session(r#"{"_auth_user_id":"abc"}"#)), Err(Anonymous::InvalidUserId));
    assert_eq!(p.claims(&session(r#"{"_auth_user_id":"1"}"#)), Err(Anonymous::NoBackend));
    assert_eq!(
        p.claims(&session(r#"{"_auth_user_id":"1","_auth_user_backend":"x.Y"}"#)),
        Err(Anonymous::BackendNotAllowed)
    );
    let s = session(&format!(r#"{{"_auth_user_id":null,"_auth_user_backend":"{MODEL_BACKEND}"}}"#));
    assert_eq!(p.claims(&s), Err(Anonymous::NoSuchUser));
    let s = session(&format!(r#"{{"_auth_user_id":"1","_auth_user_backend":"{MODEL_BACKEND}","_auth_user_hash":""}}"#));
    assert_eq!(p.verify(&p.claims(&s).unwrap(), Some(alice_row())), Identity::Anonymous(Anonymous::NoHash));
}

#[test]
fn ids_convert_like_python_int() {
    for (raw, want) in [
        ("\"42\"", Some(42)),
        ("42", Some(42)),
        (" \" 4_2 \" ", Some(42)),
        ("\"+7\"", Some(7)),
        ("1.9", Some(1)),
        ("true", Some(1)),
        ("\"99999999999999999999\"", None),
    ] {
        assert_eq!(py_int_pk(&session(raw)), Ok(want.map(Pk::Int)), "{raw}");
    }
    for raw in ["\"4__2\"", "\"_4\"", "\"\"", "NaN", "[1]", "\"1.0\"", "\"\\ud800\""] {
        assert_eq!(py_int_pk(&session(raw)), Err(Anonymous::InvalidUserId), "{raw}");
    }
}

#[test]
fn uuids_convert_like_python_uuid() {
    let u = 0x12345678_1234_5678_1234_567812345678u128;
    for raw in [
        "\"12345678-1234-5678-1234-567812345678\"",
        "\"{12345678123456781234567812345678}\"",
        "\"urn:uuid:12345678-1234-5678-1234-567812345678\"",
    ] {
        assert_eq!(py_uuid_pk(&session(raw)), Ok(Some(Pk::Uuid(u))), "{raw}");
    }
    assert_eq!(py_uuid_pk(&session("\"1234\"")), Err(Anonymous::InvalidUserId));
    assert_eq!(Pk::Uuid(u).to_id_string(), "12345678-1234-5678-1234-567812345678");
}
