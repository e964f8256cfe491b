"""The Channels yardstick for scripts/bench-ws: an echo consumer behind AuthMiddlewareStack.

It does what Switchyard's `auth = "authenticated"`, `protocol = "echo"` route does: read
the session cookie at the handshake, refuse anonymous users with 4401, echo every
message. It also owns the benchmark's database (users and sessions both servers read).
"""
