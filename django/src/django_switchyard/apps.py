"""The app's configuration: `ready()` wires everything and builds nothing."""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules


class SwitchyardConfig(AppConfig):
    name = "django_switchyard"
    label = "django_switchyard"
    verbose_name = "Switchyard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks as switchyard_checks
        from . import conf, revocation

        setting_changed.connect(conf.reset, dispatch_uid="django_switchyard.conf.reset")
        revocation.connect()
        for check in switchyard_checks.ALWAYS:
            checks.register(check, "switchyard")
        for check in switchyard_checks.DEPLOY:
            checks.register(check, "switchyard", deploy=True)
        # Each installed app's commands.py (the command registry) and events.py
        # (ModelEvents classes), as the admin finds admin.py.
        autodiscover_modules("commands", "events")
