"""HTTP: only the fan-out benchmark's publish view (scripts/bench-hub)."""

from django.urls import path

from .fanout import publish

urlpatterns = [path("publish/", publish)]
