"""No HTTP pages: the yardstick only answers WebSockets."""

urlpatterns = []
