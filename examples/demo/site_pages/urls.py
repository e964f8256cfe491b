from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("echo/", views.echo, name="echo"),
    path("redirect/", views.redirect_home, name="redirect"),
    path("headers/", views.headers, name="headers"),
    path("upload/", views.upload, name="upload"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
