from django.urls import path

from . import views

urlpatterns = [
    path("live/", views.live, name="live"),
    path("ws/hooks/log/", views.hook_log, name="hook-log"),
]
