"""The language switcher (/accounts/language/) and the two-factor sign-in pages, under /accounts/otp/ (Django's
own login pages are the rest of /accounts/)."""

from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("language/", views.language_set, name="language"),
    path("otp/", views.otp_account, name="otp"),
    path("otp/start/", views.otp_start, name="otp_start"),
    path("otp/confirm/", views.otp_confirm, name="otp_confirm"),
    path("otp/remove/", views.otp_remove, name="otp_remove"),
    path("otp/verify/", views.otp_verify, name="otp_verify"),
]
