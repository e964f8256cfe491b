from channels.generic.websocket import AsyncWebsocketConsumer


class EchoConsumer(AsyncWebsocketConsumer):
    """Accept logged-in users only (4401 otherwise), then send every message back."""

    async def connect(self):
        await self.accept()
        if not self.scope["user"].is_authenticated:
            await self.close(code=4401)

    async def receive(self, text_data=None, bytes_data=None):
        await self.send(text_data=text_data, bytes_data=bytes_data)
