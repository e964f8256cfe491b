"""`{% load switchyard %}`: the browser client's script tag and channel positions.

    {% switchyard_client %}                  the client (served by Switchyard at
                                             /_switchyard/client.js) and its settings
    {% switchyard_client url="/ws/live/" %}  ... for a socket on another route
    {% switchyard_position pos %}            the Position a view read with
                                             `django_switchyard.position(channel)`

Both write `<script>` elements only: a JSON one the client reads (never executed) and
the client itself, an ES module (`type="module"`: deferred, and run once however many
of the page's scripts import it; a classic script finds it on `window.Switchyard`).
Under a plain `runserver` without Switchyard the client's URL answers 404 and the page
works as before; with `SWITCHYARD_CLIENT_URL = ""` the tag writes nothing at all.
"""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.core.serializers.json import DjangoJSONEncoder
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from .. import conf
from ..transports import Position

register = template.Library()

# As django.utils.html.json_script: nothing in the JSON can close the script element.
_JSON_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}
DEFAULT_SOCKET_URL = "/ws/"


def _json(value: Any) -> SafeString:
    return mark_safe(json.dumps(value, cls=DjangoJSONEncoder).translate(_JSON_ESCAPES))  # noqa: S308


@register.simple_tag
def switchyard_client(url: str = DEFAULT_SOCKET_URL) -> str:
    """The client's settings (`<script type="application/json" id="switchyard-config">`) and
    `<script type="module" src=...>`; nothing when `SWITCHYARD_CLIENT_URL` is empty."""
    src = conf.get().client_url
    if not src:
        return ""
    return format_html(
        '<script type="application/json" id="switchyard-config">{}</script>\n<script type="module" src="{}"></script>',
        _json({"url": str(url)}),
        src,
    )


@register.simple_tag
def switchyard_position(position: Position | None) -> str:
    """`<script type="application/json" data-switchyard-position="CHANNEL">` holding
    `{"channel", "offset", "epoch"}`, for the client's first subscribe as `since`;
    nothing when `position` is None (Switchyard could not say)."""
    if not isinstance(position, Position):
        return ""
    value = {"channel": position.channel, "offset": position.offset, "epoch": position.epoch}
    return format_html(
        '<script type="application/json" data-switchyard-position="{}">{}</script>',
        position.channel,
        _json(value),
    )
