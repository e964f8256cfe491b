"""System checks on the settings Switchyard depends on."""

from django.core import checks


def ids(**kwargs):
    return sorted(m.id for m in checks.run_checks(tags=["switchyard"], **kwargs))


def test_a_configured_project_has_no_warnings(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    assert ids() == []


def test_a_missing_backend_secret_warns(settings, monkeypatch):
    monkeypatch.delenv("SWITCHYARD_BACKEND_SECRET", raising=False)
    settings.SWITCHYARD_BACKEND_SECRET = ""
    assert ids() == ["switchyard.W001"]


def test_a_proxy_ssl_header_switchyard_does_not_set_is_an_error(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_SSL", "on")
    assert ids() == ["switchyard.E002"]


def test_an_unset_proxy_ssl_header_warns_on_deploy(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.SECURE_PROXY_SSL_HEADER = None
    assert ids() == []
    assert ids(include_deployment_checks=True) == ["switchyard.W003"]


def test_forwarded_port_warns(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.USE_X_FORWARDED_PORT = True
    assert ids() == ["switchyard.W004"]


def test_forwarded_host_off_warns_on_deploy(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.USE_X_FORWARDED_HOST = False
    assert ids(include_deployment_checks=True) == ["switchyard.W005"]


def test_the_http_transport_without_an_admin_url_warns(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = ""
    assert ids() == ["switchyard.W006"]


def test_the_http_transport_without_a_key_warns(settings):
    settings.SWITCHYARD_BACKEND_SECRET = "s"
    settings.SWITCHYARD_TRANSPORT = "http"
    settings.SWITCHYARD_ADMIN_URL = "http://127.0.0.1:9090"
    settings.SWITCHYARD_ADMIN_KEY = ""
    assert ids() == ["switchyard.W006"]


def test_an_unknown_transport_is_an_error(settings):
    settings.SWITCHYARD_TRANSPORT = "carrier-pigeon"
    assert "switchyard.E006" in ids()
