"""`manage.py ensure_workspace`: the two demo users and a few starter tasks; safe to run every time."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from workspace.models import Task

# (username, password, is superuser): alice may also use the admin.
USERS = [("alice", "alice-password", True), ("bob", "bob-password", False)]
STARTER_TASKS = ["Try the chat in two browsers", "Edit a task in the admin", "Mention @bob in the chat"]


class Command(BaseCommand):
    help = "Create the demo users alice and bob (and starter tasks on an empty board)."

    def handle(self, *args, **options):
        User = get_user_model()
        for username, password, admin in USERS:
            user, created = User.objects.get_or_create(username=username)
            changed = []
            if created or not user.check_password(password):
                # Only when wrong: a new password changes the session auth hash, which
                # would log out every open demo session.
                user.set_password(password)
                changed.append("password")
            if user.is_staff != admin or user.is_superuser != admin:
                user.is_staff = user.is_superuser = admin
                changed += ["is_staff", "is_superuser"]
            if changed:
                user.save()
            self.stdout.write(f"user {username!r}: {'created' if created else 'updated' if changed else 'as it was'}")
        if not Task.objects.exists():
            for title in STARTER_TASKS:
                Task.objects.create(title=title)
