"""The Channels yardstick for scripts/bench-ws (an echo consumer behind AuthMiddlewareStack)
and scripts/bench-hub (fan-out through a channel layer, see `fanout`).

For bench-ws it does what Switchyard's `auth = "authenticated"`, `protocol = "echo"` route
does: read the session cookie at the handshake, refuse anonymous users with 4401, echo
every message. It also owns that benchmark's database (users and sessions both servers read).
"""
