"""django-switchyard: Django's half of Switchyard, the WebSocket front proxy for Django.

    import django_switchyard as switchyard

    switchyard.publish("news", "published", {"id": article.pk})   # on commit
    switchyard.send_to_user(user, "notice", {"text": "Hi"})
    switchyard.broadcast("maintenance", {"in": 300})
    switchyard.disconnect(user=user)                               # close their sockets (4401)
    pos = switchyard.position("news")                              # for {% switchyard_position %}

    @switchyard.command("chat.send", auth="authenticated")
    def send(request, args):
        return switchyard.CommandResponse({"ok": True})

Importing this package has no side effects: nothing connects, nothing is read from
settings until it is used.
"""

from .exceptions import CommandError, PublishError, SignatureError
from .publishing import broadcast, disconnect, position, publish, send_to_user
from .registry import authorize, command, hook
from .responses import Close, CommandResponse
from .transports import Position

__all__ = [
    "Close",
    "CommandError",
    "CommandResponse",
    "Position",
    "PublishError",
    "SignatureError",
    "authorize",
    "broadcast",
    "command",
    "disconnect",
    "hook",
    "position",
    "publish",
    "send_to_user",
]
