from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "live"
    verbose_name = "Live demo"
    # Its commands.py is found by django-switchyard's autodiscovery: nothing to import here.
