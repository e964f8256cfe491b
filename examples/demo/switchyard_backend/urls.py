"""Mount under the prefix your `[commands]` and hook URLs use:

path("ws/", include("switchyard_backend.urls"))
"""

from django.urls import path

from . import views

app_name = "switchyard_backend"

urlpatterns = [
    path("commands/<str:name>/", views.command_view, name="command"),
    path("commands/", views.command_view, name="commands"),
    path("hooks/connect/", views.hook_view, {"kind": "connect"}, name="hook-connect"),
    path("hooks/disconnect/", views.hook_view, {"kind": "disconnect"}, name="hook-disconnect"),
]
