"""The browsable API's front page: every resource of /api/v1/, not only the router's."""

from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# Sub-resources of one campaign, under /api/v1/campaigns/{id}/ (POST for the actions).
CAMPAIGN_RESOURCES = (
    "",
    "transitions",
    "history",
    "start",
    "schedule",
    "unschedule",
    "pause",
    "resume",
    "cancel",
    "details",
    "results",
    "results.csv",
    "jobs",
    "cleanup",
    "leads/upload",
    "recipients",
    "recipients/{recipient_id}",
    "test",
    "stats",
    "analytics",
    "progress",
    "phases",
    "transition",
    # A campaign's sequence (tracking/api_sequences.py).
    "steps",
    "steps/{step_id}",
    "variants",
    "variants/{variant_id}",
    "sequence-settings",
    "variant-stats",
    "timelines/{recipient_id}",
)
RECIPIENT_RESOURCES = ("events", "open", "click", "bounce")


class ApiRootView(APIView):
    """Every resource of this API. Links go to collections; `campaign` and `recipient` list what
    exists under one campaign or one recipient (replace `{id}` and `{recipient_id}`)."""

    permission_classes = [permissions.AllowAny]  # a map of URLs; every resource checks its own access

    @extend_schema(exclude=True)
    def get(self, request, format=None):
        def url(name: str, **kwargs) -> str:
            return reverse(name, kwargs=kwargs or None, request=request, format=format)

        def collection(name: str) -> str:  # the router's slash is optional; a collection's link has it
            link = url(name)
            return link if link.endswith("/") else f"{link}/"

        campaigns = collection("campaign-list")
        return Response(
            {
                "campaigns": campaigns,
                "campaign": {name or "detail": f"{campaigns}{{id}}/{name}" for name in CAMPAIGN_RESOURCES},
                "recipient": {name: f"{campaigns}tracking/{{recipient_id}}/{name}" for name in RECIPIENT_RESOURCES},
                "queue-management/status": url("queue-status"),
                "queue-management/pause": url("queue-pause"),
                "queue-management/resume-service": url("queue-resume-service"),
                "queue-management/circuit-breakers": url("circuit-breaker-list"),
                "queue-management/circuit-breakers/{service}/reset": url("circuit-breaker-reset", service="{service}")
                .replace("%7B", "{")
                .replace("%7D", "}"),
                "mailboxes": collection("mailbox-list"),
                "mailbox": {
                    name or "detail": f"{collection('mailbox-list')}{{id}}/{name}"
                    for name in ("", "resume", "reset-breaker")
                },
                "organizations": collection("organization-list"),
                "organization": f"{collection('organization-list')}{{slug}}/",
                "webhook-endpoints": collection("webhook-endpoint-list"),
                "webhook-endpoint": {
                    name or "detail": f"{collection('webhook-endpoint-list')}{{id}}/{name}"
                    for name in ("", "deliveries", "test", "rotate-secret")
                },
                "webhook-deliveries/{id}/replay": url("webhook-delivery-replay", delivery_id="{id}")
                .replace("%7B", "{")
                .replace("%7D", "}"),
                "webhooks/generic": url("webhook-generic-list"),
                "webhooks/instantly": url("webhook-instantly-list"),
                "webhooks/inbound-mail": url("inbound-mail-list"),
                "schema": url("schema"),
                "docs": url("api-docs"),
            }
        )
