"""The views Switchyard calls, dispatched by name. Mount them once:

    path("switchyard/", include("django_switchyard.urls"))

and point Switchyard at them (`manage.py switchyard --print-config` writes the config):
commands at `switchyard/commands/{command}/`, hooks at `switchyard/hooks/connect/` and
`switchyard/hooks/disconnect/`, channel authorization at `switchyard/authorize/`.
"""

from django.urls import path

from . import views

app_name = "django_switchyard"

urlpatterns = [
    path("commands/<str:name>/", views.dispatch_command, name="command"),
    path("commands/", views.dispatch_command, name="commands"),
    path("hooks/connect/", views.dispatch_hook, {"kind": "connect"}, name="hook-connect"),
    path("hooks/disconnect/", views.dispatch_hook, {"kind": "disconnect"}, name="hook-disconnect"),
    path("authorize/", views.dispatch_authorize, name="authorize"),
]
