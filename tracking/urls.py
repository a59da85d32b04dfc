"""Public tracking URLs, included at /t/. Unknown tokens still match, so the pixel always answers."""

from django.urls import path, re_path

from . import views

app_name = "tracking"

urlpatterns = [
    re_path(r"^o/(?P<token>.+)\.gif$", views.open_pixel, name="open"),
    path("c/<str:token>/<int:link_id>", views.click, name="click"),
    path("u/<str:token>", views.unsubscribe, name="unsubscribe"),
]
