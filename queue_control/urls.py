from django.urls import path

from . import api

# The design names these paths without a trailing slash. The slashed spelling works too, but only
# the design's spelling goes into the OpenAPI schema.
ROUTES = [
    ("status", api.QueueStatusView, "queue-status"),
    ("pause", api.QueuePauseView, "queue-pause"),
    ("resume-service", api.QueueResumeView, "queue-resume"),
    ("circuit-breakers", api.BreakerListView, "circuit-breakers"),
    ("circuit-breakers/<str:service>/reset", api.BreakerResetView, "circuit-breaker-reset"),
]

urlpatterns = [path(route, view.as_view(), name=name) for route, view, name in ROUTES] + [
    path(f"{route}/", view.as_view(schema=None)) for route, view, _ in ROUTES
]
