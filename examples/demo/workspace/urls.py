from django.urls import path

from . import views

urlpatterns = [
    path("workspace/", views.workspace, name="workspace"),
    path("workspace/tasks.json", views.tasks_json, name="workspace-tasks"),
    path("workspace/messages.json", views.messages_json, name="workspace-messages"),
]
