"""The settings switchyard_backend reads, each through one accessor, on every call.

Nothing is cached, so `override_settings` and a changed environment work without
resetting anything.

    SWITCHYARD_BACKEND_SECRET            the HMAC secret Switchyard signs calls with
                                         (its `[backends] secret_env`). Default: the
                                         environment variable of the same name.
    SWITCHYARD_BACKEND_SECRET_FALLBACKS  older secrets still accepted while rotating,
                                         like Django's SECRET_KEY_FALLBACKS. Default: [].
    SWITCHYARD_SIGNATURE_MAX_AGE         seconds a signature stays valid, either way
                                         from now. Default: 300, as Switchyard expects.
"""

import os

from django.conf import settings

SECRET_ENV = "SWITCHYARD_BACKEND_SECRET"
# Switchyard signs each call just before sending it, so five minutes covers clock skew
# between hosts while keeping the replay window short.
DEFAULT_SIGNATURE_MAX_AGE = 300


def backend_secrets():
    """The secrets a signature may be made with, current first; empty when none is set."""
    current = getattr(settings, "SWITCHYARD_BACKEND_SECRET", None)
    if current is None:
        current = os.environ.get(SECRET_ENV, "")
    fallbacks = getattr(settings, "SWITCHYARD_BACKEND_SECRET_FALLBACKS", [])
    return [secret for secret in [current, *fallbacks] if secret]


def signature_max_age():
    return getattr(settings, "SWITCHYARD_SIGNATURE_MAX_AGE", DEFAULT_SIGNATURE_MAX_AGE)
