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
    assert_eq!(config.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(config.upstream.url, UpstreamUrl::Tcp { authority: "127.0.0.1:8000".into() });
    assert_eq!(config.upstream.connect_timeout, Duration::from_secs(5));
    assert_eq!(config.server.shutdown_grace, Duration::from_secs(30));
    assert!(config.server.tls.is_none());
}

#[test]
fn listen_takes_a_single_string() {
    let config = parse_str("[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nurl = \"unix:/run/g.sock\"\n").unwrap();
    assert_eq!(config.server.listen.len(), 1);
}

#[test]
fn tls_paths_are_anchored_at_the_config_folder() {
    let text =
        format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"certs/a.pem\"\nkey = \"/abs/k.pem\"\n");
    // [server.tls] after [upstream] is still the server's table in TOML.
    let config = parse_str(&text).unwrap();
    let tls = config.server.tls.unwrap();
    let crate::config::Certificate::Files { cert, key } = tls.certificate else { panic!("{tls:?}") };
    assert_eq!(cert, Path::new("/etc/switchyard/certs/a.pem"));
    assert_eq!(key, Path::new("/abs/k.pem"));
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

/// What `switchyard check` prints for [`MINIMAL`]: written by hand from the defaults that
/// config.example.toml documents, so a changed default or a key that stops printing shows.
const MINIMAL_EFFECTIVE: &str = r#"routes = []
static = []
channels = []

[server]
listen = ["127.0.0.1:8080"]
trusted_proxies = []
redirect_to_https = false
shutdown_grace = "30s"
header_read_timeout = "30s"
body_read_timeout = "1m"
tls_handshake_timeout = "10s"
idle_timeout = "75s"
http2_ping_interval = "30s"
http2_ping_timeout = "20s"
workers = 0

[upstream]
url = "http://127.0.0.1:8000"
connect_timeout = "5s"
response_timeout = "1m"
pool_idle_timeout = "30s"
pool_max_idle = 64
max_request_body = "100MiB"

[buffering]
requests = true
responses = true
request_memory = "16KiB"
response_memory = "64KiB"
max_response_temp_file = "1GiB"
max_temp_disk = "1GiB"

[log]
level = "info"
format = "text"
access = true

[websocket]
accept_all = false
ping_interval = "25s"
idle_timeout = "75s"
max_per_user = 50
max_per_ip = 500
outbox_messages = 256
outbox_bytes = "1MiB"
max_in_flight = 16
max_state_size = "64KiB"
revalidate = "1m"
read_buffer_size = "1KiB"
write_buffer_size = "8KiB"
resume_ttl = "5m"
max_subscriptions = 256

[commands]

[backends]
timeout = "5s"
forward_cookie = true
max_reply_size = "1MiB"

[broker]
kind = "local"
"#;

#[test]
fn effective_config_spells_out_every_documented_default() {
    assert_eq!(parse_str(MINIMAL).unwrap().to_toml(), MINIMAL_EFFECTIVE);
}

#[test]
fn effective_config_parses_back_to_the_values_written() {
    let text = r#"
[server]
listen = "127.0.0.1:9000"
header_read_timeout = "1500ms"
workers = 3
[upstream]
url = "unix:/run/gunicorn.sock"
response_timeout = "2h"
max_request_body = "10MB"
[websocket]
ping_interval = "90s"
outbox_messages = 1
[[routes]]
path = "/ws/*"
protocol = "broadcast"
max_message_size = "3KiB"
"#;
    let printed = parse_str(text).unwrap().to_toml();
    let again = parse_str(&printed).unwrap();
    assert_eq!(again.server.listen, ["127.0.0.1:9000".parse().unwrap()]);
    assert_eq!(again.server.header_read_timeout, Duration::from_millis(1500));
    assert_eq!(again.server.workers, 3);
    assert_eq!(again.upstream.url, UpstreamUrl::Unix { path: "/run/gunicorn.sock".into() });
    assert_eq!(again.upstream.response_timeout, Duration::from_secs(7200));
    assert_eq!(again.upstream.max_request_body, 10_000_000);
    assert_eq!(again.websocket.ping_interval, Duration::from_secs(90));
    assert_eq!(again.websocket.outbox_messages, 1);
    assert_eq!(again.routes[0].path, RoutePath::Prefix("/ws/".into()));
    assert_eq!(again.routes[0].protocol, Protocol::Broadcast);
    assert_eq!(again.routes[0].max_message_size, 3 << 10);
}

#[test]
fn zero_ping_interval_is_rejected_with_key_line_and_smallest_value() {
    let err = parse_str(&format!("{MINIMAL}[websocket]\nping_interval = \"0s\"\n")).unwrap_err().to_string();
    assert_eq!(
        err,
        "switchyard.toml:7:17: websocket.ping_interval: \"0s\" is too small: the smallest allowed value is \"1ms\""
    );
}

#[test]
fn zero_max_in_flight_is_rejected() {
    let err = parse_str(&format!("{MINIMAL}[websocket]\nmax_in_flight = 0\n")).unwrap_err().to_string();
    assert!(err.ends_with("websocket.max_in_flight: 0 is too small: the smallest allowed value is 1"), "{err}");
}

#[test]
fn zero_outbox_messages_is_rejected_not_rounded_up() {
    let err = parse_str(&format!("{MINIMAL}[websocket]\noutbox_messages = 0\n")).unwrap_err().to_string();
    assert!(err.contains("websocket.outbox_messages: 0 is too small"), "{err}");
}

/// Every timer, size and count a module would choke on, at a value past its bound: each is
/// refused by key (no value reaches a zero interval, an `Instant` overflow or a huge buffer).
#[test]
fn every_bounded_value_is_refused_past_its_bound_by_key() {
    let cases = [
        ("[server]", "header_read_timeout = \"0s\"", "server.header_read_timeout"),
        ("[server]", "shutdown_grace = \"10000h\"", "server.shutdown_grace"),
        ("[server]", "workers = 100000", "server.workers"),
        ("[upstream]", "connect_timeout = \"0ms\"", "upstream.connect_timeout"),
        ("[upstream]", "response_timeout = \"0s\"", "upstream.response_timeout"),
        ("[upstream]", "pool_idle_timeout = \"0s\"", "upstream.pool_idle_timeout"),
        ("[websocket]", "idle_timeout = \"0s\"", "websocket.idle_timeout"),
        ("[websocket]", "revalidate = \"0s\"", "websocket.revalidate"),
        ("[websocket]", "ping_interval = \"9999999999h\"", "websocket.ping_interval"),
        ("[websocket]", "max_per_user = 0", "websocket.max_per_user"),
        ("[websocket]", "max_per_ip = 0", "websocket.max_per_ip"),
        ("[websocket]", "outbox_bytes = \"0B\"", "websocket.outbox_bytes"),
        ("[websocket]", "max_state_size = \"1B\"", "websocket.max_state_size"),
        ("[websocket]", "read_buffer_size = \"0B\"", "websocket.read_buffer_size"),
        ("[websocket]", "read_buffer_size = \"64GiB\"", "websocket.read_buffer_size"),
        ("[websocket]", "write_buffer_size = \"2MiB\"", "websocket.write_buffer_size"),
        ("[backends]", "timeout = \"0s\"", "backends.timeout"),
        ("[backends]", "max_reply_size = \"0B\"", "backends.max_reply_size"),
        ("[[routes]]\npath = \"/ws/\"", "max_message_size = \"0B\"", "routes[0].max_message_size"),
        ("[log]", "level = \"info,[\"", "log.level"),
    ];
    for (table, line, key) in cases {
        let text = match MINIMAL.contains(table) {
            true => MINIMAL.replace(&format!("{table}\n"), &format!("{table}\n{line}\n")),
            false => format!("{MINIMAL}{table}\n{line}\n"),
        };
        let line_number = text.lines().position(|l| l == line).unwrap() + 1;
        let err = parse_str(&text).unwrap_err().to_string();
        let at = format!("switchyard.toml:{line_number}:");
        assert!(err.starts_with(&at) && err.contains(&format!(" {key}: ")), "{line}: {err}");
    }
}

#[test]
fn command_timeout_is_bounded_under_its_quoted_pattern() {
    let env: HashMap<&str, &str> = [("SY_SECRET", "s3cret")].into();
    let text = WITH_ROUTES.replace("timeout = \"2s\"", "timeout = \"0s\"");
    let err = parse(&text, "t.toml", Path::new("/"), &env).unwrap_err().to_string();
    assert!(err.starts_with("t.toml:21:11: commands.\"chat.*\".timeout: \"0s\" is too small"), "{err}");
}

#[test]
fn unknown_top_level_table_is_reported_as_a_table() {
    let err = parse_str(&format!("{MINIMAL}[chanels]\npattern = \"x\"\n")).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:6:2: unknown table or top-level key: `chanels`"), "{err}");
    assert!(!err.contains("[]"), "{err}");
}

#[test]
fn unknown_key_in_a_nested_table_names_that_table() {
    let text = format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:1\"\ncert = \"c\"\nkey = \"k\"\nciphers = 1\n");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:10:1: unknown key in [server.tls]: `ciphers`"), "{err}");
    let err = parse_str(&format!("{MINIMAL}[[routes]]\npath = \"/ws/\"\npaht = 1\n")).unwrap_err().to_string();
    assert!(err.contains("unknown key in [routes]: `paht`") && err.contains("did you mean `path`?"), "{err}");
}

#[test]
fn subprotocols_must_be_header_tokens() {
    let err = parse_str(&format!("{MINIMAL}[[routes]]\npath = \"/ws/\"\nsubprotocols = [\"a b\"]\n")).unwrap_err();
    assert!(err.to_string().contains("routes[0].subprotocols: `a b` is not a subprotocol name"), "{err}");
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
    let env: HashMap<&str, &str> =
        [("SWITCHYARD_BACKEND_SECRET", "x"), ("DJANGO_SECRET_KEY", "k"), ("SWITCHYARD_ADMIN_KEY", "a")].into();
    // The example's [[static]] folder must exist: a folder beside the file, as in /etc/switchyard.
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir(base.path().join("static")).unwrap();
    let config = parse(text, "config.example.toml", base.path(), &env).unwrap();
    assert!(config.server.tls.is_some());
    assert_eq!(config.statics[0].dir, base.path().join("static"));
    // Every option the effective config prints is documented in the example.
    for line in config.to_toml().lines() {
        if let Some((key, _)) = line.split_once(" = ").filter(|(_, v)| !matches!(*v, "[]" | "{}")) {
            assert!(text.contains(&format!("\n{key} = ")), "config.example.toml lacks `{key}`");
        }
    }
}

#[test]
fn example_config_acme_line_is_valid() {
    let text = include_str!("../../config.example.toml");
    let line = text.lines().find_map(|l| l.strip_prefix("# acme = ")).expect("the example shows acme");
    let dir = tempfile::tempdir().unwrap();
    let line = line.replace("/var/lib/switchyard/acme", &dir.path().display().to_string());
    let file = format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\nacme = {line}\n");
    let tls = parse_str(&file).unwrap().server.tls.unwrap();
    assert!(matches!(tls.certificate, Certificate::Acme(ref a) if a.domains == ["example.com"]), "{tls:?}");
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
    assert_eq!(config.routes[1].max_message_size, 16 << 20);
    assert_eq!(config.backends.secret.as_ref().unwrap().expose(), "s3cret");
    assert_eq!(config.commands[&CommandPattern("chat.*".into())].timeout, Duration::from_secs(2));
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

#[test]
fn channel_rules_read_as_the_issue_writes_them() {
    let text = format!(
        "{MINIMAL}\n[broker]\nkind = \"local\"\n[[channels]]\npattern = \"news\"\nsubscribe = \"anyone\"\nhistory = {{ size = 100, ttl = \"10m\" }}\n[[channels]]\npattern = \"user:{{user_id}}\"\nsubscribe = \"authenticated\"\n[[channels]]\npattern = \"model:*\"\nsubscribe = \"anyone\"\n"
    );
    let config = parse_str(&text).unwrap();
    assert_eq!(config.channels.len(), 3);
    assert_eq!(config.channels[0].history_size, 100);
    assert_eq!(config.channels[0].history_ttl, std::time::Duration::from_secs(600));
    assert_eq!(config.channels[1].pattern.to_string(), "user:{user_id}");
    assert_eq!(config.channels[2].publish, Permission::Nobody);
}

#[test]
fn a_backend_permission_without_authorize_is_refused_at_its_line() {
    let text = format!("{MINIMAL}\n[[channels]]\npattern = \"team:*\"\nsubscribe = \"backend\"\n");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("channels[0].authorize") && err.contains("add authorize ="), "{err}");
    let text = format!("{MINIMAL}\n[[channels]]\npattern = \"a b\"\n");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("not a channel pattern"), "{err}");
}

const VIEW_ROUTE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[upstream]
url = "http://127.0.0.1:8000"
[backends]
secret_env = "SY_SECRET"
[[routes]]
path = "/live/*"
"#;

#[test]
fn a_view_route_needs_its_view_url() {
    let env: HashMap<&str, &str> = [("SY_SECRET", "s")].into();
    let err = parse(&format!("{VIEW_ROUTE}protocol = \"view\"\n"), "t.toml", Path::new("/"), &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("routes[0].view") && text.contains("view = \"http://127.0.0.1:8000{path}\""), "{text}");
    let ok = format!("{VIEW_ROUTE}protocol = \"view\"\nview = \"http://127.0.0.1:8000{{path}}\"\n");
    let config = parse(&ok, "t.toml", Path::new("/"), &env).unwrap();
    assert_eq!(config.routes[0].protocol, Protocol::View);
}

#[test]
fn a_view_url_on_another_protocol_is_refused() {
    let env: HashMap<&str, &str> = [("SY_SECRET", "s")].into();
    let text = format!("{VIEW_ROUTE}view = \"http://127.0.0.1:8000/live/\"\n");
    let err = parse(&text, "t.toml", Path::new("/"), &env).unwrap_err().to_string();
    assert!(err.contains("routes[0].view") && err.contains("set protocol = \"view\""), "{err}");
}

#[test]
fn a_view_route_without_a_backend_secret_is_refused() {
    let text =
        VIEW_ROUTE.replace("secret_env = \"SY_SECRET\"\n", "") + "protocol = \"view\"\nview = \"http://x:1{path}\"\n";
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("backends.secret_env"), "{err}");
}

/// `[django]` on `database`, its SECRET_KEY from `K`, with `extra` after it.
fn with_django(database: &str, extra: &str) -> Result<Config, ConfigError> {
    let env: HashMap<&str, &str> = [("K", "django-secret"), ("OUTBOX", "postgres://sy@db/outbox")].into();
    let text = format!("{MINIMAL}[django]\nsecret_key_env = \"K\"\ndatabase = \"{database}\"\n{extra}");
    parse(&text, "switchyard.toml", Path::new("/etc/switchyard"), &env)
}

#[test]
fn the_broker_is_postgres_by_default_when_django_is_on_postgresql() {
    let config = with_django("postgres://sy@db/site", "").unwrap();
    assert_eq!(config.broker.kind, BrokerKind::Postgres);
    assert_eq!(config.broker.database.as_ref().map(|d| d.expose()), Some("postgres://sy@db/site"));
    assert!(config.to_toml().contains("[broker]\nkind = \"postgres\"\n"), "{}", config.to_toml());
    let config = with_django("sqlite:///srv/db.sqlite3", "").unwrap();
    assert_eq!(config.broker.kind, BrokerKind::Local);
}

#[test]
fn the_broker_database_may_name_another_database() {
    let config = with_django("sqlite:///srv/db.sqlite3", "[broker]\ndatabase_env = \"OUTBOX\"\n").unwrap();
    assert_eq!(config.broker.kind, BrokerKind::Postgres);
    assert_eq!(config.broker.database.as_ref().map(|d| d.expose()), Some("postgres://sy@db/outbox"));
    let config = with_django("postgres://sy@db/site", "[broker]\nkind = \"local\"\n").unwrap();
    assert!(config.broker.database.is_none(), "local needs no database");
}

#[test]
fn a_postgres_broker_without_a_postgresql_database_is_refused() {
    let err = with_django("sqlite:///srv/db.sqlite3", "[broker]\nkind = \"postgres\"\n").unwrap_err().to_string();
    assert!(err.contains("broker.kind") && err.contains("add database = \"postgres://"), "{err}");
    let err = with_django("sqlite:///srv/db.sqlite3", "[broker]\ndatabase = \"sqlite:///x\"\n").unwrap_err();
    assert!(
        err.to_string().contains("switchyard.toml:10:12: broker.database: the outbox lives in PostgreSQL"),
        "{err}"
    );
}

#[test]
fn outbox_rows_are_kept_for_the_longest_history_ttl_and_at_least_five_minutes() {
    let channels = "[[channels]]\npattern = \"a\"\nhistory = { size = 1, ttl = \"1h\" }\n[[channels]]\npattern = \"b\"\nhistory = { size = 1, ttl = \"1s\" }\n";
    let config = with_django("postgres://sy@db/site", channels).unwrap();
    assert_eq!(config.broker.retention, Duration::from_secs(3600));
    let short = channels.replace("\"1h\"", "\"2s\"");
    assert_eq!(with_django("postgres://sy@db/site", &short).unwrap().broker.retention, MIN_OUTBOX_RETENTION);
}

/// A `[server.tls]` with `acme = { ... }` built from `fields`, its cache in `dir`.
fn acme_file(dir: &Path, fields: &str) -> String {
    let cache = dir.join("acme");
    format!(
        "{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\nacme = {{ {fields}cache = \"{}\" }}\n",
        cache.display()
    )
}

const ACME_OK: &str = "domains = [\"Example.com\"], contact = \"mailto:ops@example.com\", ";

#[test]
fn acme_loads_with_lets_encrypt_by_default_and_makes_an_owner_only_cache() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = parse_str(&acme_file(dir.path(), ACME_OK)).unwrap();
    let Some(TlsConfig { certificate: Certificate::Acme(acme), .. }) = config.server.tls else { panic!() };
    assert_eq!(acme.domains, ["example.com"]);
    assert_eq!(acme.directory, server::LETS_ENCRYPT_DIRECTORY);
    let mode = std::fs::metadata(dir.path().join("acme")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{mode:o}");
}

#[test]
fn acme_and_certificate_files_are_refused_together() {
    let dir = tempfile::tempdir().unwrap();
    let text = acme_file(dir.path(), ACME_OK).replace("acme = ", "cert = \"c.pem\"\nkey = \"k.pem\"\nacme = ");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:10:8: server.tls.acme: "), "{err}");
    assert!(err.contains("keep `acme` and remove `cert` and `key`"), "{err}");
}

#[test]
fn tls_without_a_certificate_says_what_to_write() {
    let text = format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\n");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("server.tls: no certificate: write cert = "), "{err}");
    assert!(err.contains("or acme = { domains = "), "{err}");
    let half = format!("{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\ncert = \"c.pem\"\n");
    assert!(parse_str(&half).unwrap_err().to_string().contains("a certificate needs its key"));
}

#[test]
fn acme_rejections_point_at_the_value_and_say_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("domains = [], contact = \"mailto:a@b.c\", ", "server.tls.acme.domains: name 1 to 100 domains"),
        ("domains = [\"*.example.com\"], contact = \"mailto:a@b.c\", ", "domains[0]: `*.example.com` is a wildcard"),
        ("domains = [\"a.com\", \"10.0.0.1\"], contact = \"mailto:a@b.c\", ", "domains[1]: `10.0.0.1` is an IP"),
        ("domains = [\"bad_name.com\"], contact = \"mailto:a@b.c\", ", "`bad_name.com` is not a DNS name"),
        ("domains = [\"a.com\", \"A.com.\"], contact = \"mailto:a@b.c\", ", "domains[1]: `a.com` is listed twice"),
        ("domains = [\"a.com\"], contact = \"ops@example.com\", ", "contact: `ops@example.com` is not one mailto:"),
        (
            "domains = [\"a.com\"], contact = \"mailto:a@b.c\", directory = \"http://acme.test/dir\", ",
            "directory: `http://acme.test/dir` is not an https URL",
        ),
    ];
    for (fields, expected) in cases {
        let err = parse_str(&acme_file(dir.path(), fields)).unwrap_err().to_string();
        assert!(err.starts_with("switchyard.toml:8:"), "{err}");
        assert!(err.contains(expected), "{fields}: {err}");
    }
}

#[test]
fn an_acme_cache_that_cannot_be_written_is_refused_with_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let text = format!(
        "{MINIMAL}[server.tls]\nlisten = \"127.0.0.1:8443\"\nacme = {{ {ACME_OK}cache = \"{}/acme\" }}\n",
        file.display()
    );
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.starts_with("switchyard.toml:8:"), "{err}");
    assert!(err.contains("server.tls.acme.cache: cannot write in"), "{err}");
    assert!(err.contains("cache = \"/var/lib/switchyard/acme\""), "{err}");
}

#[test]
fn changing_acme_is_named_as_waiting_for_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let old = parse_str(&acme_file(dir.path(), ACME_OK)).unwrap();
    let new = parse_str(&acme_file(dir.path(), &ACME_OK.replace("Example.com", "example.org"))).unwrap();
    assert!(old.restart_only_changes(&new).contains(&"[server.tls] acme"));
    assert!(old.restart_only_changes(&old).is_empty());
}
