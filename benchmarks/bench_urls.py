"""The project's URLs plus `/bare`: the pixel's answer without any recording, served through the
same middleware, the reference the pixel's throughput is measured against. It comes last, so
resolving it costs at least as much as resolving the pixel."""

from django.http import HttpResponse
from django.urls import path

from campaigns_project.urls import urlpatterns as project_urlpatterns
from tracking.views import PIXEL_GIF


def bare(request):
    response = HttpResponse(PIXEL_GIF, content_type="image/gif")
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, max-age=0"
    response["Pragma"] = "no-cache"
    return response


urlpatterns = [*project_urlpatterns, path("bare", bare)]
