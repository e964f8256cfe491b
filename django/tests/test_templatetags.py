"""{% switchyard_client %} and {% switchyard_position %}."""

import json
import re

import pytest
from django.template import Context, Template

from django_switchyard import Position


def render(source, **context):
    return Template("{% load switchyard %}" + source).render(Context(context))


def test_the_client_tag_writes_the_script_and_its_settings():
    html = render("{% switchyard_client %}")
    # The client is an ES module (it exports): as a classic script it would not even parse.
    assert '<script type="module" src="/_switchyard/client.js"></script>' in html
    config = re.search(r'<script type="application/json" id="switchyard-config">(.*?)</script>', html).group(1)
    assert json.loads(config) == {"url": "/ws/"}


def test_the_client_tag_escapes_a_hostile_url():
    html = render('{% switchyard_client url=u %}', u="</script><script>alert(1)</script>")
    assert "<script>alert(1)" not in html
    assert html.count("</script>") == 2


def test_the_client_tag_writes_nothing_when_the_client_url_is_empty(settings):
    settings.SWITCHYARD_CLIENT_URL = ""
    assert render("{% switchyard_client %}") == ""


def test_the_position_tag_embeds_offset_and_epoch():
    html = render("{% switchyard_position p %}", p=Position("model:shop.Product", 41, "k3f"))
    match = re.fullmatch(r'<script type="application/json" data-switchyard-position="model:shop.Product">(.*)</script>', html)
    assert json.loads(match.group(1)) == {"channel": "model:shop.Product", "offset": 41, "epoch": "k3f"}


def test_the_position_tag_writes_nothing_without_a_position():
    assert render("{% switchyard_position p %}", p=None) == ""
    assert render("{% switchyard_position missing %}") == ""


def test_the_position_tag_escapes_a_hostile_channel_name():
    html = render("{% switchyard_position p %}", p=Position('"></script><img src=x onerror=alert(1)>', 1, "</script>"))
    assert "<img" not in html
    assert html.count("</script>") == 1


@pytest.mark.django_db
def test_a_page_without_switchyard_still_renders(client, settings, admin_api):
    admin_api.close()  # nothing answers: Switchyard is absent
    settings.SWITCHYARD_PUBLISH_RETRIES = 0
    response = client.get("/products/")
    assert response.status_code == 200
    assert b"data-switchyard-position" not in response.content


@pytest.mark.django_db
def test_a_page_embeds_the_position_read_before_its_queries(client, admin_api):
    admin_api.answers["/api/channels"] = [(200, {"channels": [{"channel": "model:shop.Product", "offset": 7, "epoch": "e1"}]})]
    response = client.get("/products/")
    assert b'data-switchyard-position="model:shop.Product">{"channel": "model:shop.Product", "offset": 7, "epoch": "e1"}' in response.content
