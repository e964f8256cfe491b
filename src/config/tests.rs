use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

fn parse_str(text: &str) -> Result<Config, ConfigError> {
    let env: HashMap<&str, &str> = HashMap::new();
    parse(text, "switchyard.toml", Path::new("/etc/switchyard"), &env)
}

const MINIMAL: &str = r#"
[server]
listen = ["127.0.0.1:8080"]
[upstream]
url = "http://127.0.0.1:8000"
"#;

#[test]
fn minimal_file_from_the_readme_loads_with_defaults() {
    let config = parse_str(MINIMAL).unwrap();
    assert_eq!(
        config.server.listen.0,
        vec!["127.0.0.1:8080".parse().unwrap()]
    );
    assert_eq!(
        config.upstream.url,
        UpstreamUrl::Tcp {
            authority: "127.0.0.1:8000".into()
        }
    );
    assert_eq!(config.upstream.connect_timeout.0, Duration::from_secs(5));
    assert_eq!(config.server.shutdown_grace.0, Duration::from_secs(30));
    assert!(config.server.tls.is_none());
}

#[test]
fn listen_takes_a_single_string() {
    let config =
        parse_str("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"unix:/run/g.sock\"\n")
            .unwrap();
    assert_eq!(config.server.listen.0.len(), 1);
}

#[test]
fn tls_paths_are_anchored_at_the_config_folder() {
    let text = format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"certs/a.pem\"\nkey = \"/abs/k.pem\"\n");
    // [server.tls] after [upstream] is still the server's table in TOML.
    let config = parse_str(&text).unwrap();
    let tls = config.server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/switchyard/certs/a.pem"));
    assert_eq!(tls.key, Path::new("/abs/k.pem"));
}

#[test]
fn unknown_key_names_line_column_table_and_suggestion() {
    let err =
        parse_str("[server]\nlistn = [\"127.0.0.1:8080\"]\n[upstream]\nurl = \"http://x:1\"\n")
            .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("switchyard.toml:2:1: "), "{text}");
    assert!(text.contains("unknown key in [server]: `listn`"), "{text}");
    assert!(text.contains("did you mean `listen`?"), "{text}");
}

#[test]
fn bad_duration_points_at_the_value() {
    let err = parse_str(&format!("{MINIMAL}connect_timeout = \"5 seconds\"\n")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("switchyard.toml:6:19: "), "{text}");
    assert!(text.contains("is not a duration like"), "{text}");
}

#[test]
fn bad_upstream_says_what_to_write() {
    let err = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"https://x\"\n")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("switchyard.toml:4:"), "{text}");
    assert!(text.contains("unix:/run/gunicorn.sock"), "{text}");
}

#[test]
fn missing_section_is_reported() {
    let err = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(
        err.to_string().contains("missing field `upstream`"),
        "{err}"
    );
}

#[test]
fn no_listener_is_rejected_with_what_to_write() {
    let err = parse_str("[server]\n[upstream]\nurl = \"http://x:1\"\n").unwrap_err();
    assert!(err.to_string().contains("server.listen"), "{err}");
}

#[test]
fn redirect_without_tls_is_rejected() {
    let err = parse_str(&MINIMAL.replace("[upstream]", "redirect_to_https = true\n[upstream]"))
        .unwrap_err();
    assert!(err.to_string().contains("redirect_to_https"), "{err}");
}

#[test]
fn trusted_proxies_take_addresses_and_ranges() {
    let text = MINIMAL.replace(
        "[upstream]",
        "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[upstream]",
    );
    let config = parse_str(&text).unwrap();
    assert!(config.server.trusts("10.1.2.3".parse().unwrap()));
    assert!(config.server.trusts("::1".parse().unwrap()));
    assert!(!config.server.trusts("192.168.0.1".parse().unwrap()));
}

#[test]
fn effective_config_prints_back_and_parses_again() {
    let config = parse_str(MINIMAL).unwrap();
    let printed = config.to_toml();
    assert!(printed.contains("connect_timeout = \"5s\""), "{printed}");
    parse_str(&printed).unwrap();
}

#[test]
fn suggestion_reads_serde_unknown_field_wording() {
    let msg = "unknown field `lisen`, expected one of `listen`, `tls`, `trusted_proxies`";
    assert_eq!(suggestion(msg).as_deref(), Some("did you mean `listen`?"));
    assert_eq!(
        suggestion("unknown field `zzzzzz`, expected `listen`"),
        None
    );
}
