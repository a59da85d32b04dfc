"""The operator console's live dashboard (/admin/live/, staff only): running, paused and recent
campaigns with progress bars that the WebSocket updates (sent of total, rate, ETA), the queue and
its breakers, and charts of one campaign (events over time, the funnel, human and machine opens).

The page gets its first state in the HTML, then the live messages over /ws/live/ (the platform's
view: the admin is the platform's), and falls back to polling state.json when the socket cannot
be opened. The charts are re-read every few seconds from charts.json. Chart.js is served from our
static files (tracking/static/tracking/vendor/chartjs).
"""

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.db.models import Q
from django.db.models.functions import TruncHour, TruncMinute
from django.http import Http404, HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.states import CampaignStatus, Phase

from . import live, selectors

RECENT = timedelta(days=2)
DASHBOARD_LIMIT = 50
TIMELINE_TYPES = ("open", "click", "reply", "bounce", "unsubscribe")


def dashboard_campaigns():
    since = timezone.now() - RECENT
    return (
        Campaign.objects.alive()
        .filter(Q(status__in=(CampaignStatus.RUNNING, CampaignStatus.PAUSED)) | Q(updated_at__gte=since))
        .order_by("-updated_at")
    )


def dashboard_state() -> dict:
    return {
        "campaigns": live.campaigns_progress_messages(dashboard_campaigns(), limit=DASHBOARD_LIMIT),
        "queue": live.queue_state_message(),
    }


def campaign_charts(*, campaign: Campaign, now=None) -> dict:
    """Events over time (by minute for a campaign started in the last three hours, else by hour
    over two days), the funnel from leads to replies, and human against machine opens: from the
    event log's (campaign, occurred_at) index and the counters."""
    now = now or timezone.now()
    recent = campaign.started_at is not None and now - campaign.started_at < timedelta(hours=3)
    trunc, since = (TruncMinute, now - timedelta(hours=3)) if recent else (TruncHour, now - timedelta(hours=48))
    buckets = selectors._buckets(campaign, trunc, since)
    stats = selectors.campaign_stats(campaign=campaign)
    phases = {row.phase: row for row in campaign.phases.all()}

    def phase(name: str, field: str) -> int:
        return getattr(phases[name], field) if name in phases else 0

    opens = stats["opens"]
    return {
        "campaign": str(campaign.pk),
        "name": campaign.name,
        "bucket": "minute" if recent else "hour",
        "timeline": {
            "labels": [bucket["bucket"] for bucket in buckets],
            "series": {kind: [bucket.get(kind, 0) for bucket in buckets] for kind in TIMELINE_TYPES},
        },
        "funnel": [
            {"step": "leads", "value": phase(Phase.LEAD_SOURCING, "items_done")},
            {"step": "verified", "value": phase(Phase.VERIFICATION, "items_passed")},
            {"step": "enriched", "value": phase(Phase.ENRICHMENT, "items_passed")},
            {"step": "sent", "value": stats["sent"]},
            {"step": "opened", "value": opens["unique"]},
            {"step": "clicked", "value": stats["clicks"]["unique"]},
            {"step": "replied", "value": stats["replies"]},
        ],
        "opens": {
            "human": opens["total"],
            "machine": max(opens["total_raw"] - opens["total"], 0),
            "unique_human": opens["unique"],
            "unique_raw": opens["unique_raw"],
        },
    }


def dashboard_view(request: HttpRequest):
    context = {
        **admin.site.each_context(request),
        "title": "Live operations",
        "initial": dashboard_state(),
        "live_urls": {
            "websocket": settings.LIVE_WEBSOCKET_URL,
            "state": reverse("admin:live_dashboard_state"),
            "charts": reverse("admin:live_dashboard_charts"),
            "campaign": reverse("admin:campaigns_campaign_change", args=["00000000-0000-0000-0000-000000000000"]),
        },
    }
    return TemplateResponse(request, "admin/live_dashboard.html", context)


def dashboard_state_view(request: HttpRequest) -> JsonResponse:
    """What the page polls when the WebSocket cannot be opened: the same messages."""
    return JsonResponse(dashboard_state())


def dashboard_charts_view(request: HttpRequest) -> JsonResponse:
    raw = request.GET.get("campaign", "")
    campaigns = Campaign.objects.alive().prefetch_related("phases")
    if raw:
        try:
            campaign = campaigns.filter(pk=uuid.UUID(raw)).first()
        except ValueError:
            campaign = None
        if campaign is None:
            raise Http404("No campaign with that id.")
    else:
        campaign = campaigns.filter(pk__in=dashboard_campaigns().values("pk")[:1]).first()
        if campaign is None:
            return JsonResponse({"campaign": None})
    return JsonResponse(campaign_charts(campaign=campaign))


def dashboard_urls() -> list:
    view = admin.site.admin_view  # staff only
    return [
        path("live/", view(dashboard_view), name="live_dashboard"),
        path("live/state.json", view(dashboard_state_view), name="live_dashboard_state"),
        path("live/charts.json", view(dashboard_charts_view), name="live_dashboard_charts"),
    ]
