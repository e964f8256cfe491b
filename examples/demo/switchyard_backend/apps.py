from django.apps import AppConfig
from django.core import checks


class SwitchyardBackendConfig(AppConfig):
    name = "switchyard_backend"
    verbose_name = "Switchyard command backend"

    def ready(self):
        from . import checks as switchyard_checks

        checks.register(switchyard_checks.check_secret, "switchyard")
