"""The fan-out job of scripts/bench-hub, the Channels way: sockets join groups, Django
publishes with `group_send`.

`FanoutConsumer` (/ws/fanout/?c=bench&c=room:7) joins each group named in the query
string, then sends `{"subscribed": true}`; every event sent to one of its groups goes out
as the text frame the publisher built. `publish` (POST /publish/, a JSON list of
`{"channel", "event", "data"}` items, the body Switchyard's `/api/publish` takes) builds
each event's frame once, as Switchyard does, and `group_send`s it to the channel's group.
"""

import json
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt


def group_name(channel):
    # Group names allow letters, digits, hyphens, underscores and periods only.
    return channel.replace(":", ".")


class FanoutConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        query = parse_qs(self.scope["query_string"].decode())
        self.groups_joined = [group_name(c) for c in query.get("c", [])]
        for group in self.groups_joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send(text_data='{"subscribed": true}')

    async def disconnect(self, code):
        for group in getattr(self, "groups_joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def bench_event(self, event):
        await self.send(text_data=event["text"])


@csrf_exempt
async def publish(request):
    items = json.loads(request.body)
    layer = get_channel_layer()
    for item in items:
        channel = item["channel"]
        frame = {"channel": channel, "event": item.get("event", "message"), "data": item.get("data")}
        text = json.dumps({"push": frame}, separators=(",", ":"))
        await layer.group_send(group_name(channel), {"type": "bench.event", "text": text})
    return JsonResponse({"published": len(items)})
