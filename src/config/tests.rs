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
    assert_eq!(config.server.listen.0, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(config.upstream.url, UpstreamUrl::Tcp { authority: "127.0.0.1:8000".into() });
    assert_eq!(config.upstream.connect_timeout.0, Duration::from_secs(5));
    assert_eq!(config.server.shutdown_grace.0, Duration::from_secs(30));
    assert!(config.server.tls.is_none());
}

#[test]
fn listen_takes_a_single_string() {
    let config = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"unix:/run/g.sock\"\n").unwrap();
    assert_eq!(config.server.listen.0.len(), 1);
}

#[test]
fn tls_paths_are_anchored_at_the_config_folder() {
    let text =
        format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"certs/a.pem\"\nkey = \"/abs/k.pem\"\n");
    // [server.tls] after [upstream] is still the server's table in TOML.
    let config = parse_str(&text).unwrap();
    let tls = config.server.tls.unwrap();
    assert_eq!(tls.cert, Path::new("/etc/switchyard/certs/a.pem"));
    assert_eq!(tls.key, Path::new("/abs/k.pem"));
}

#[test]
fn unknown_key_names_line_column_table_and_suggestion() {
    let err = parse_str("[server]\nlistn = [\"127.0.0.1:8080\"]\n[upstream]\nurl = \"http://x:1\"\n").unwrap_err();
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
    let err = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"https://x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("switchyard.toml:4:"), "{text}");
    assert!(text.contains("unix:/run/gunicorn.sock"), "{text}");
}

#[test]
fn missing_section_is_reported() {
    let err = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n").unwrap_err();
    assert!(err.to_string().contains("missing field `upstream`"), "{err}");
}

#[test]
fn no_listener_is_rejected_with_what_to_write() {
    let err = parse_str("[server]\n[upstream]\nurl = \"http://x:1\"\n").unwrap_err();
    assert!(err.to_string().contains("server.listen"), "{err}");
}

#[test]
fn redirect_without_tls_is_rejected() {
    let err = parse_str(&MINIMAL.replace("[upstream]", "redirect_to_https = true\n[upstream]")).unwrap_err();
    assert!(err.to_string().contains("redirect_to_https"), "{err}");
}

#[test]
fn trusted_proxies_take_addresses_and_ranges() {
    let text = MINIMAL.replace("[upstream]", "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n[upstream]");
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
    assert_eq!(suggestion("unknown field `zzzzzz`, expected `listen`"), None);
}

#[test]
fn example_config_is_valid_and_complete() {
    let text = include_str!("../../config.example.toml");
    let env: HashMap<&str, &str> = [("SWITCHYARD_BACKEND_SECRET", "x"), ("DJANGO_SECRET_KEY", "k")].into();
    let config = parse(text, "config.example.toml", Path::new("/etc/switchyard"), &env).unwrap();
    assert!(config.server.tls.is_some());
    // Every option the effective config prints is documented in the example.
    for line in config.to_toml().lines() {
        if let Some((key, _)) = line.split_once(" = ").filter(|(_, v)| !matches!(*v, "[]" | "{}")) {
            assert!(text.contains(&format!("\n{key} = ")), "config.example.toml lacks `{key}`");
        }
    }
}

const WITH_ROUTES: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8000"
[backends]
secret_env = "SY_SECRET"
[[routes]]
path = "/ws/chat/"
auth = "authenticated"
origins = ["https://Example.com:443"]
commands = ["ping", "chat.*"]
on_connect = "http://127.0.0.1:8000/ws/hooks/connect/"
[[routes]]
path = "/ws/echo/*"
protocol = "echo"
max_message_size = "16MiB"
[commands."chat.*"]
backend = "http"
url = "http://127.0.0.1:8000/ws/commands/{command}/"
timeout = "2s"
"#;

#[test]
fn routes_commands_and_backend_secret_load() {
    let env: HashMap<&str, &str> = [("SY_SECRET", "s3cret")].into();
    let config = parse(WITH_ROUTES, "t.toml", Path::new("/"), &env).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert_eq!(config.routes[0].auth, AuthRule::Authenticated);
    assert_eq!(config.routes[0].origins.as_ref().unwrap()[0].0, "https://example.com");
    assert_eq!(config.routes[1].protocol, Protocol::Echo);
    assert_eq!(config.routes[1].max_message_size.0, 16 << 20);
    assert_eq!(config.backends.secret.as_ref().unwrap().expose(), "s3cret");
    assert!(!config.to_toml().contains("s3cret"));
}

#[test]
fn backend_calls_without_a_secret_are_rejected() {
    let err = parse_str(&WITH_ROUTES.replace("secret_env = \"SY_SECRET\"", "")).unwrap_err();
    assert!(err.to_string().contains("backends.secret_env"), "{err}");
}

#[test]
fn unset_secret_variable_is_named_but_no_value_printed() {
    let err = parse_str(WITH_ROUTES).unwrap_err();
    assert!(err.to_string().contains("`SY_SECRET` is not set"), "{err}");
}

#[test]
fn bad_route_values_point_at_the_value() {
    let err = parse_str(&WITH_ROUTES.replace("protocol = \"echo\"", "protocol = \"ecko\"")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(":16:12:") && text.contains("did you mean `echo`?"), "{text}");
}
