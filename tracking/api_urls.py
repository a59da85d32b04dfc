"""Tracking API routes, included at /api/v1/ before campaigns.urls so that these win over the
campaign router's detail routes. A trailing slash is optional, as on the campaign router."""

from django.urls import re_path

from . import api, api_live, api_sequences
from .states import EventType

urlpatterns = [
    re_path(r"^campaigns/tracking/(?P<recipient_id>[^/]+)/events/?$", api.RecipientEventListView.as_view()),
    *[
        re_path(
            rf"^campaigns/tracking/(?P<recipient_id>[^/]+)/{kind}/?$",
            api.RecipientEventCreateView.as_view(event_type=kind),
            name=f"tracking-recipient-{kind}",
        )
        for kind in (EventType.OPEN, EventType.CLICK, EventType.BOUNCE)
    ],
    re_path(r"^campaigns/(?P<campaign_id>[^/]+)/recipients/?$", api.RecipientListView.as_view(), name="recipients"),
    re_path(
        r"^campaigns/(?P<campaign_id>[^/]+)/recipients/(?P<recipient_id>\d+)/?$",
        api.RecipientDetailView.as_view(),
        name="recipient-detail",
    ),
    re_path(r"^campaigns/(?P<campaign_id>[^/]+)/test/?$", api.TestSendView.as_view(), name="campaign-test-send"),
    re_path(r"^campaigns/(?P<campaign_id>[^/]+)/stats/?$", api.StatsView.as_view(), name="campaign-stats"),
    re_path(r"^campaigns/(?P<campaign_id>[^/]+)/analytics/?$", api.AnalyticsView.as_view(), name="campaign-analytics"),
    # One route per provider, each with its own verifier and schema; any other provider is a 404.
    re_path(r"^webhooks/generic/?$", api.GenericWebhookView.as_view(), name="webhook-generic"),
    re_path(r"^webhooks/instantly/?$", api.InstantlyWebhookView.as_view(), name="webhook-instantly"),
    # Live operations: progress for clients that poll, outgoing webhook endpoints (tracking/api_live.py).
    *api_live.urlpatterns,
    # A campaign's sequence: steps, variants, window and stop rules, timelines (tracking/api_sequences.py).
    *api_sequences.urlpatterns,
]
