from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    name = "workspace"
    verbose_name = "Team workspace"
    # commands.py and events.py are found by django-switchyard's autodiscovery.
