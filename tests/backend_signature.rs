//! `X-Switchyard-Signature` against an independent verifier: the Django side's own
//! `django_switchyard.signing.verify` (the Django app, run in the test venv) judges the
//! header and body Switchyard really sent, with Switchyard's clock and the verifier's both
//! set by the test. A call is accepted up to 300 s from the verifier's clock either way,
//! refused a second past that, and under a secret that is not the one it was signed with.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use http::Request;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use support::ws::*;
use support::*;
use switchyard::clock::Clock;

/// Not ASCII, so the verifier must encode it as Switchyard does (UTF-8).
const SECRET: &str = "backend-sécret-ключ";
/// Switchyard's clock while it signs the call.
const T: u64 = 1_800_000_000;

/// A call as the backend received it: the signature header and the body bytes.
type Call = (String, Vec<u8>);

/// The first command call Switchyard makes with its clock at [`T`].
async fn a_signed_call() -> Call {
    let seen: Arc<Mutex<Option<Call>>> = Arc::default();
    let log = seen.clone();
    let backend = upstream(move |req: Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let header = req.headers().get("x-switchyard-signature").map(|v| v.to_str().unwrap().to_owned());
            let body = req.into_body().collect().await.unwrap().to_bytes().to_vec();
            *log.lock().unwrap() = Some((header.unwrap_or_default(), body));
            http::Response::new(bytes_body(json!({"result": 1}).to_string()))
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), SECRET).unwrap();
    let config = format!(
        "{base}[backends]\nsecret_file = \"secret\"\n[[routes]]\npath = \"/ws/\"\n\
         [commands.\"t.*\"]\nbackend = \"http\"\nurl = \"{url}/cmd/{{command}}/\"\n",
        base = minimal_config("http://127.0.0.1:9", ""),
        url = backend.url,
    );
    let clock = Clock::at_unix_secs(T as f64);
    let sy = switchyard::server::start_with_clock(config_in(dir.path(), &config), clock).await.unwrap();
    let mut client = connect(sy.plain_addrs[0], "/ws/").await;
    welcome(&mut client).await;
    let reply = command(&mut client, json!({"id": 1, "t.say": {"text": "héllo \u{1f600}", "quote": "\"."}})).await;
    assert_eq!(reply["t.say"]["result"], 1, "{reply}");
    let call = seen.lock().unwrap().take().expect("the backend saw the call");
    call
}

/// What the Django side's verifier says about `header` over `body` for each (now, secrets):
/// "ok", or the message of the `SignatureError` it raised.
fn django_verdicts(header: &str, body: &[u8], checks: &[(f64, Vec<&str>)]) -> Vec<String> {
    let script = r#"
import json, sys
from django_switchyard import conf, signing
doc = json.load(sys.stdin)
body = bytes.fromhex(doc["body_hex"])
out = []
for check in doc["checks"]:
    try:
        signing.verify(doc["header"], body, check["secrets"], conf.DEFAULT_SIGNATURE_MAX_AGE, now=check["now"])
        out.append("ok")
    except signing.SignatureError as e:
        out.append(str(e))
print(json.dumps(out))
"#;
    let checks: Vec<Value> = checks.iter().map(|(now, secrets)| json!({"now": now, "secrets": secrets})).collect();
    let body_hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
    let input = json!({"header": header, "body_hex": body_hex, "checks": checks}).to_string();
    let mut python = Command::new(support::django::venv().join("bin/python"))
        .args(["-c", script])
        .current_dir(repo_root().join("examples/demo"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the venv's python runs");
    python.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(out.status.success(), "the verifier script failed");
    serde_json::from_slice(&out.stdout).expect("the verifier prints a JSON list")
}

#[tokio::test]
async fn djangos_verifier_accepts_the_call_up_to_300_s_from_its_clock_either_way() {
    let (header, body) = a_signed_call().await;
    assert!(header.starts_with(&format!("t={T},v1=")), "{header}");
    let t = T as f64;
    let nows = [t - 300.0, t, t + 0.5, t + 300.0];
    let checks: Vec<_> = nows.iter().map(|&now| (now, vec![SECRET])).collect();
    assert_eq!(django_verdicts(&header, &body, &checks), ["ok"; 4], "at {nows:?}");
}

#[tokio::test]
async fn djangos_verifier_refuses_the_call_past_300_s_from_its_clock() {
    let (header, body) = a_signed_call().await;
    let t = T as f64;
    let nows = [t - 301.0, t - 300.5, t + 300.5, t + 301.0, t + 86_400.0];
    let checks: Vec<_> = nows.iter().map(|&now| (now, vec![SECRET])).collect();
    for (now, verdict) in nows.iter().zip(django_verdicts(&header, &body, &checks)) {
        assert!(verdict.contains("is more than 300 s from now"), "at {now}: {verdict}");
    }
}

#[tokio::test]
async fn djangos_verifier_checks_the_secret_and_takes_it_as_a_fallback() {
    let (header, body) = a_signed_call().await;
    let now = T as f64;
    let checks = [(now, vec!["another-secret"]), (now, vec!["the-new-secret", SECRET]), (now, vec![&SECRET[..9]])];
    let verdicts = django_verdicts(&header, &body, &checks);
    assert_eq!(verdicts, ["signature does not match", "ok", "signature does not match"]);
}
