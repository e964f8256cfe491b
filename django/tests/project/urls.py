from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from shop import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("switchyard/", include("django_switchyard.urls")),
    path("own/rename/", views.rename, name="rename"),
    path("own/class/", views.Total.as_view(), name="total"),
    path("products/", views.products, name="products"),
    path("rolled-back/", views.rolled_back, name="rolled-back"),
    path("outbox-tour/", views.outbox_tour, name="outbox-tour"),
    path("disconnect-me/", views.disconnect_me, name="disconnect-me"),
    path("live/echo/", views.live_echo, name="live-echo"),
    path("live/rooms/<slug:room>/", views.live_only, name="live-only"),
]
