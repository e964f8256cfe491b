"""URL map of the demo site: everything lives in the site_pages app."""

from django.urls import include, path

urlpatterns = [
    path("", include("site_pages.urls")),
]
