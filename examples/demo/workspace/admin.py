from django.contrib import admin

from .models import Message, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "status", "assignee", "updated"]
    list_editable = ["status", "assignee"]
    list_filter = ["status"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["author", "text", "room", "created"]
