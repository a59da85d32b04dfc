from django.urls import re_path

from . import api

# The design names these paths without a trailing slash; one is accepted too.
urlpatterns = [
    re_path(r"^status/?$", api.QueueStatusView.as_view(), name="queue-status"),
    re_path(r"^pause/?$", api.QueuePauseView.as_view(), name="queue-pause"),
    re_path(r"^resume-service/?$", api.QueueResumeView.as_view(), name="queue-resume"),
    re_path(r"^circuit-breakers/?$", api.BreakerListView.as_view(), name="circuit-breakers"),
    re_path(
        r"^circuit-breakers/(?P<service>[^/]+)/reset/?$", api.BreakerResetView.as_view(), name="circuit-breaker-reset"
    ),
]
