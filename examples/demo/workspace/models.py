"""The workspace's two models: chat messages and the tasks of the live board."""

from django.conf import settings
from django.db import models

MAX_MESSAGE = 500
MAX_TITLE = 120


class Message(models.Model):
    """One line in a chat room; kept so a page opens with the recent ones."""

    room = models.CharField(max_length=64, default="lobby", db_index=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    text = models.CharField(max_length=MAX_MESSAGE)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.author}: {self.text[:40]}"

    def to_dict(self):
        return {
            "id": self.pk,
            "room": self.room,
            "author": self.author.get_username(),
            "text": self.text,
            "created": self.created.isoformat(),
        }


class Task(models.Model):
    """A row of the live board: created, moved, assigned and deleted from anywhere."""

    class Status(models.TextChoices):
        TODO = "todo", "To do"
        DOING = "doing", "In progress"
        DONE = "done", "Done"

    title = models.CharField(max_length=MAX_TITLE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.TODO)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return self.title

    def to_dict(self):
        """What the board shows; the same shape in the page, the refetch and the events."""
        return {
            "id": self.pk,
            "title": self.title,
            "status": self.status,
            "assignee": self.assignee.get_username() if self.assignee_id else None,
            "updated": self.updated.isoformat() if self.updated else None,
        }
