"""The config `manage.py switchyard --print-config` derives from the settings.

These read the TOML back with tomllib; test_end_to_end.py hands it to the real binary's
`switchyard check`.
"""

import io
import tomllib
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command

from django_switchyard import derive


@pytest.fixture(autouse=True)
def _file_database(monkeypatch):
    """Once a test database exists, the connection names SQLite's in-memory one (which
    Switchyard refuses): derive from a file, as `manage.py` outside tests does."""
    monkeypatch.setattr(derive, "database", lambda alias="default": ("sqlite:///srv/site/db.sqlite3", None))


def config(**addresses):
    return tomllib.loads(derive.derive(derive.Addresses(**addresses)))


def printed(*args):
    out = io.StringIO()
    call_command("switchyard", "--print-config", *args, stdout=out)
    return tomllib.loads(out.getvalue())


def test_the_django_section_follows_the_settings(settings):
    django = config()["django"]
    assert django["secret_key_env"] == "DJANGO_SECRET_KEY"
    assert django["secret_key_fallbacks_env"] == "DJANGO_SECRET_KEY_FALLBACKS"
    assert django["session_engine"] == "db"
    assert django["session_cookie_name"] == "sessionid"
    assert django["session_cookie_age"] == settings.SESSION_COOKIE_AGE
    assert django["authentication_backends"] == ["django.contrib.auth.backends.ModelBackend"]
    assert django["pushed_revocation"] is True
    assert (django["user_table"], django["user_pk_column"], django["user_pk_type"]) == ("auth_user", "id", "int")


def test_a_renamed_session_cookie_is_followed(settings):
    settings.SESSION_COOKIE_NAME = "sid"
    settings.SESSION_COOKIE_AGE = 3600
    django = config()["django"]
    assert (django["session_cookie_name"], django["session_cookie_age"]) == ("sid", 3600)


@pytest.mark.parametrize(
    ("engine", "name"),
    [
        ("django.contrib.sessions.backends.db", "db"),
        ("django.contrib.sessions.backends.cached_db", "cached_db"),
        ("django.contrib.sessions.backends.signed_cookies", "signed_cookies"),
    ],
)
def test_each_readable_session_engine_is_named(settings, engine, name):
    settings.SESSION_ENGINE = engine
    assert config()["django"]["session_engine"] == name


@pytest.mark.parametrize("engine", ["django.contrib.sessions.backends.cache", "django.contrib.sessions.backends.file"])
def test_an_engine_switchyard_cannot_read_is_refused_by_name(settings, engine):
    settings.SESSION_ENGINE = engine
    with pytest.raises(ImproperlyConfigured, match="db, cached_db or signed_cookies"):
        derive.derive()


def test_a_custom_user_model_gives_its_table_and_columns(settings):
    settings.AUTH_USER_MODEL = "shop.Member"
    django = config()["django"]
    assert django["user_table"] == "shop_members"
    assert (django["user_pk_column"], django["user_pk_type"]) == ("member_uuid", "uuid")
    assert django["user_username_column"] == "mail"
    assert django["user_password_column"] == "password"
    # No such fields on the model: Switchyard treats the users as active, not staff.
    assert (django["user_is_active_column"], django["user_is_staff_column"]) == ("", "")


def test_an_sqlite_database_is_its_absolute_path():
    url, secret = derive.database_url("sqlite", {"NAME": "relative/db.sqlite3"})
    assert url == "sqlite://" + str(Path("relative/db.sqlite3").resolve())
    assert secret is None


def test_an_in_memory_sqlite_database_is_refused():
    with pytest.raises(ImproperlyConfigured, match="in-memory"):
        derive.database_url("sqlite", {"NAME": ":memory:"})


def test_a_postgres_password_goes_to_an_environment_variable_only():
    url, secret = derive.database_url(
        "postgresql", {"NAME": "site", "USER": "web", "PASSWORD": "p@ss/w:rd", "HOST": "db.internal", "PORT": "5433"}
    )
    assert url == "postgres://web@db.internal:5433/site"
    assert secret == "postgres://web:p%40ss%2Fw%3Ard@db.internal:5433/site"


def test_a_postgres_unix_socket_host_is_quoted():
    url, _ = derive.database_url("postgresql", {"NAME": "site", "USER": "web", "HOST": ""})
    assert url == "postgres://web@%2Fvar%2Frun%2Fpostgresql/site"


def test_with_a_password_the_config_names_the_variable_not_the_secret(settings, monkeypatch):
    monkeypatch.setattr(derive, "database", lambda alias="default": ("postgres://u@h/db", "postgres://u:pw@h/db"))
    text = derive.derive()
    assert "pw" not in text
    assert tomllib.loads(text)["django"]["database_env"] == "DJANGO_DATABASE_URL"
    assert derive.secret_environment()["DJANGO_DATABASE_URL"] == "postgres://u:pw@h/db"


def test_another_database_is_refused(settings):
    with pytest.raises(ImproperlyConfigured, match="SQLite or PostgreSQL, not mysql"):
        derive.database_url("mysql", {})


def test_the_secret_key_is_never_written(settings):
    settings.SECRET_KEY = "a-very-secret-key-for-this-test-only"
    settings.SECRET_KEY_FALLBACKS = ["older-secret-key-for-this-test"]
    text = derive.derive()
    assert "a-very-secret" not in text and "older-secret" not in text
    env = derive.secret_environment()
    assert env["DJANGO_SECRET_KEY"] == "a-very-secret-key-for-this-test-only"
    assert env["DJANGO_SECRET_KEY_FALLBACKS"] == '["older-secret-key-for-this-test"]'


def test_origins_come_from_allowed_hosts_and_csrf_trusted_origins(settings):
    settings.ALLOWED_HOSTS = ["example.com", ".example.org"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://app.example.net", "https://*.example.net"]
    assert config()["routes"][0]["origins"] == [
        "https://example.com",
        "http://example.com",
        "https://example.org",
        "http://example.org",
        "https://app.example.net",
    ]


def test_ssl_redirect_leaves_out_plain_http_origins(settings):
    settings.ALLOWED_HOSTS = ["example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert config()["routes"][0]["origins"] == ["https://example.com"]


def test_allowed_hosts_star_keeps_switchyards_same_origin_default(settings):
    settings.ALLOWED_HOSTS = ["*"]
    assert "origins" not in config()["routes"][0]


def test_a_hostile_host_name_stays_a_string(settings):
    settings.ALLOWED_HOSTS = ['evil"\n[server]\nlisten = "0.0.0.0:1']
    parsed = config()
    assert parsed["server"]["listen"] == ["127.0.0.1:8000"]
    assert parsed["routes"][0]["origins"][0] == 'https://evil"\n[server]\nlisten = "0.0.0.0:1'


def test_registered_commands_get_their_url_and_auth():
    commands = config(backend="http://127.0.0.1:8001")["commands"]
    assert commands["shop.buy"] == {
        "backend": "http",
        "url": "http://127.0.0.1:8001/switchyard/commands/{command}/",
        "auth": "authenticated",
    }
    assert commands["shop.admin"]["auth"] == "staff"
    assert commands["shop.count"]["auth"] == "anyone"


def test_registered_hooks_are_on_the_route():
    route = config(upstream="http://127.0.0.1:8001")["routes"][0]
    assert route["path"] == "/ws/"
    assert route["on_connect"] == "http://127.0.0.1:8001/switchyard/hooks/connect/"
    assert route["on_disconnect"] == "http://127.0.0.1:8001/switchyard/hooks/disconnect/"


def test_model_events_and_authorizers_get_channel_rules(settings):
    settings.SWITCHYARD_CHANNELS = [{"pattern": "news", "subscribe": "anyone", "history": {"size": 100, "ttl": "10m"}}]
    channels = config()["channels"]
    assert channels == [
        {"pattern": "news", "subscribe": "anyone", "history": {"size": 100, "ttl": "10m"}},
        {"pattern": "model:shop.Note", "subscribe": "staff"},
        {"pattern": "model:shop.Product", "subscribe": "anyone"},
        {"pattern": "model:shop.review", "subscribe": "staff"},
        {"pattern": "user:{user_id}", "subscribe": "authenticated"},
        {"pattern": "product:*", "subscribe": "backend", "authorize": "http://127.0.0.1:8001/switchyard/authorize/"},
    ]


@pytest.mark.parametrize("bad", ["news", [{"subscribe": "anyone"}], ["news"]])
def test_bad_extra_channels_are_refused(settings, bad):
    settings.SWITCHYARD_CHANNELS = bad
    with pytest.raises(ImproperlyConfigured, match="SWITCHYARD_CHANNELS"):
        derive.derive()


def test_websocket_accept_all_maps_to_the_websocket_section(settings):
    settings.WEBSOCKET_ACCEPT_ALL = True
    assert config()["websocket"]["accept_all"] is True


def test_command_views_on_a_unix_socket_upstream_need_a_tcp_backend():
    with pytest.raises(ImproperlyConfigured, match="TCP address"):
        derive.derive(derive.Addresses(upstream="unix:/run/gunicorn.sock"))


def test_print_config_takes_its_addresses_from_options():
    parsed = printed("--listen", "0.0.0.0:80", "--upstream", "unix:/run/g.sock", "--backend", "http://127.0.0.1:8002")
    assert parsed["server"]["listen"] == ["0.0.0.0:80"]
    assert parsed["upstream"]["url"] == "unix:/run/g.sock"
    assert parsed["commands"]["shop.count"]["url"].startswith("http://127.0.0.1:8002/")


def test_print_config_puts_the_admin_listener_where_the_admin_url_points(settings):
    settings.SWITCHYARD_ADMIN_URL = "http://127.0.0.1:9555"
    assert printed()["admin"] == {"listen": "127.0.0.1:9555", "key_env": "SWITCHYARD_ADMIN_KEY"}


def test_print_config_reports_what_it_cannot_follow(settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.cache"
    with pytest.raises(CommandError, match="cannot|not"):
        printed()


def test_the_command_without_an_action_says_what_to_give():
    with pytest.raises(CommandError, match="--print-config or run"):
        call_command("switchyard")
