"""System checks: say at startup what would otherwise be a 403 on every call."""

from django.core import checks

from . import conf


def check_secret(app_configs, **kwargs):
    if conf.backend_secrets():
        return []
    return [
        checks.Warning(
            "No Switchyard backend secret: every command and hook call will be refused.",
            hint=f"Set the {conf.SECRET_ENV} environment variable (or setting) to the "
            "secret Switchyard's [backends] secret_env names.",
            id="switchyard.W001",
        )
    ]
