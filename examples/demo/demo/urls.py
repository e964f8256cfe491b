"""URL map of the demo site: pages, the /live/ page, and the views Switchyard calls."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

urlpatterns = [
    path("", include("site_pages.urls")),
    path("", include("live.urls")),
    path("", include("workspace.urls")),
    path("admin/", admin.site.urls),
    path("ws/", include("django_switchyard.urls")),
]

urlpatterns += staticfiles_urlpatterns()  # only while DEBUG is on
