"""URL map of the demo site: pages, the /live/ page, and the views Switchyard calls."""

from django.urls import include, path

urlpatterns = [
    path("", include("site_pages.urls")),
    path("", include("live.urls")),
    path("ws/", include("django_switchyard.urls")),
]
