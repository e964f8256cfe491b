"""`manage.py ensure_demo_user`: make sure the demo login works; safe to run every time."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"


class Command(BaseCommand):
    help = f"Create the user {DEMO_USERNAME!r} with password {DEMO_PASSWORD!r} if missing."

    def handle(self, *args, **options):
        User = get_user_model()
        user, created = User.objects.get_or_create(username=DEMO_USERNAME)
        if created or not user.check_password(DEMO_PASSWORD):
            # Only set the password when it is wrong: setting it changes the session
            # auth hash, which would log out every existing demo session.
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
            self.stdout.write(
                f"{'created' if created else 'reset password of'} user {DEMO_USERNAME!r}"
            )
        else:
            self.stdout.write(f"user {DEMO_USERNAME!r} already exists")
