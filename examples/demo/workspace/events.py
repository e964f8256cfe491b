"""Every save and delete of a Task is published on `model:workspace.Task` (django-switchyard
finds this module by itself); assigning a task also tells the new assignee, on their own
channel `user:<id>`, from wherever the change was made (the board, the admin, a shell)."""

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver

from django_switchyard.events import ModelEvents

from . import notify
from .models import Task


class TaskEvents(ModelEvents):
    model = Task
    # Task.to_dict() is what is sent (the board renders the same shape).
    subscribe = "authenticated"


@receiver(pre_save, sender=Task, dispatch_uid="workspace.task.previous_assignee")
def remember_assignee(sender, instance, **kwargs):
    """The assignee before this save, so post_save can tell a new one."""
    if instance.pk is None:
        instance._previous_assignee_id = None
    else:
        instance._previous_assignee_id = (
            Task.objects.filter(pk=instance.pk).values_list("assignee_id", flat=True).first()
        )


@receiver(post_save, sender=Task, dispatch_uid="workspace.task.assigned")
def tell_new_assignee(sender, instance, **kwargs):
    if instance.assignee_id and instance.assignee_id != getattr(instance, "_previous_assignee_id", None):
        notify.user(instance.assignee_id, "assigned", f"You were given the task “{instance.title}”.", task=instance.pk)
