from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "live"
    verbose_name = "Live demo"

    def ready(self):
        # Registers the demo's commands and hooks with switchyard_backend.
        from . import commands  # noqa: F401
