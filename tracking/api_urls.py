"""The tracking app's API routes: (prefix, ViewSet, basename) registered on the one API router
(campaigns_project/api_urls.py). A campaign's sub-resources sit under
`campaigns/(?P<campaign_pk>[^/.]+)/`; no route depends on the order of inclusion
(tests/test_routes.py)."""

from rest_framework.viewsets import ViewSetMixin

from campaigns.urls import CAMPAIGN

from . import api, api_inbound, api_live, api_sequences

ROUTES: list[tuple[str, type[ViewSetMixin], str]] = [
    (f"{CAMPAIGN}/recipients", api.RecipientViewSet, "campaign-recipient"),
    (f"{CAMPAIGN}/test", api.TestSendViewSet, "campaign-test-send"),
    (f"{CAMPAIGN}/stats", api.StatsViewSet, "campaign-stats"),
    (f"{CAMPAIGN}/analytics", api.AnalyticsViewSet, "campaign-analytics"),
    (f"{CAMPAIGN}/progress", api_live.CampaignProgressViewSet, "campaign-progress"),
    ("campaigns/tracking", api.RecipientTrackingViewSet, "tracking-recipient"),
    # A campaign's sequence: steps, variants, window and stop rules, timelines (tracking/api_sequences.py).
    (f"{CAMPAIGN}/steps", api_sequences.SequenceStepViewSet, "campaign-steps"),
    (f"{CAMPAIGN}/variants", api_sequences.StepVariantViewSet, "campaign-variants"),
    (f"{CAMPAIGN}/timelines", api_sequences.RecipientTimelineViewSet, "campaign-timelines"),
    (f"{CAMPAIGN}/sequence-settings", api_sequences.SequenceSettingsViewSet, "campaign-sequence-settings"),
    (f"{CAMPAIGN}/variant-stats", api_sequences.VariantStatsViewSet, "campaign-variant-stats"),
    # One route per provider, each with its own verifier and schema; any other provider is a 404.
    ("webhooks/generic", api.GenericWebhookViewSet, "webhook-generic"),
    ("webhooks/instantly", api.InstantlyWebhookViewSet, "webhook-instantly"),
    # Raw MIME from relays and ESP inbound routes (tracking/api_inbound.py, docs/flows/replies.md).
    ("webhooks/inbound-mail", api_inbound.InboundMailViewSet, "inbound-mail"),
    # Live operations: outgoing webhook endpoints and their deliveries (tracking/api_live.py).
    ("webhook-endpoints", api_live.WebhookEndpointViewSet, "webhook-endpoint"),
    ("webhook-deliveries", api_live.WebhookDeliveryViewSet, "webhook-delivery"),
]
