"""/metrics: the product's own figures in Prometheus' text format, for on-call.

Read at scrape time by one collector (prometheus-client's custom-collector API), so every web
process answers the same figures without a multiprocess registry: the latch and the gate, every
breaker, campaigns and jobs by status (and type), the mails sent (a counter: `rate()` of it is
the send rate), recipients by status, outgoing webhook deliveries and attempts, the pixel's opens
waiting in Redis and drained, the IMAP accounts the reply poller reads (failing or not). The
database figures are cached for METRICS_CACHE_SECONDS, so several scrapers cost one set of queries.

Protected unless DEBUG: `Authorization: Bearer <METRICS_TOKEN>` or a staff session.
"""

import hmac

import redis
from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Sum
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from campaigns.models import Campaign, Job
from campaigns_project.live import dirty_campaigns_key
from campaigns_project.redis import get_redis, rkey
from queue_control.breakers import CLOSED, OPEN, UNKNOWN
from queue_control.gate import gate_open
from queue_control.models import QueueState
from queue_control.selectors import breakers_status

from .models import CampaignCounter, ImapAccountState, WebhookDelivery, WebhookEndpoint
from .services import opens_pending

PREFIX = "cbo"
CACHE_KEY = "metrics:database"


def _database_figures() -> dict:
    """The figures that cost queries, cached briefly (the job table may hold millions of rows)."""
    figures = cache.get(CACHE_KEY)
    if figures is not None:
        return figures
    figures = {
        "campaigns": list(Campaign.objects.alive().order_by().values_list("status").annotate(n=Count("pk"))),
        "jobs": list(Job.objects.order_by().values_list("job_type", "status").annotate(n=Count("pk"))),
        "recipients": list(
            CampaignCounter.objects.filter(metric__startswith="recipients.")
            .order_by()
            .values_list("metric")
            .annotate(n=Sum("value"))
        ),
        "deliveries": list(WebhookDelivery.objects.order_by().values_list("status").annotate(n=Count("pk"))),
        "endpoints": list(WebhookEndpoint.objects.order_by().values_list("is_active").annotate(n=Count("pk"))),
        "imap_failing": ImapAccountState.objects.filter(consecutive_failures__gt=0).count(),
        "imap_total": ImapAccountState.objects.count(),
    }
    if settings.METRICS_CACHE_SECONDS:
        cache.set(CACHE_KEY, figures, settings.METRICS_CACHE_SECONDS)
    return figures


def _redis_counter(*parts: str) -> int:
    try:
        return int(get_redis().get(rkey("metrics", *parts)) or 0)
    except redis.RedisError:
        return 0


class ProductCollector:
    def collect(self):
        latch = QueueState.get()
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_paused", "1 while the queue latch is paused.", value=int(not latch.is_active)
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_queue_gate_open",
            "1 while workers see the queue open (the Redis mirror).",
            value=int(gate_open()),
        )
        state = GaugeMetricFamily(
            f"{PREFIX}_breaker_state",
            "1 for each breaker's current state (closed, open, unknown).",
            labels=["service", "state"],
        )
        failures = GaugeMetricFamily(
            f"{PREFIX}_breaker_failures", "Failures in the breaker's window (for an open one: those that opened it).",
            labels=["service"],
        )  # fmt: skip
        for breaker in breakers_status():
            for name in (CLOSED, OPEN, UNKNOWN):
                state.add_metric([breaker["service"], name], int(breaker["state"] == name))
            failures.add_metric([breaker["service"]], breaker["failures"])
        yield state
        yield failures

        figures = _database_figures()
        campaigns = GaugeMetricFamily(f"{PREFIX}_campaigns", "Live campaigns by status.", labels=["status"])
        for status, n in figures["campaigns"]:
            campaigns.add_metric([status], n)
        yield campaigns
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs by type and status.", labels=["type", "status"])
        for job_type, status, n in figures["jobs"]:
            jobs.add_metric([job_type, status], n)
        yield jobs
        recipients = dict(figures["recipients"])
        yield CounterMetricFamily(
            f"{PREFIX}_emails_sent", "Mails the mail server accepted (rate() of it is the send rate).",
            value=recipients.get("recipients.sent", 0) or 0,
        )  # fmt: skip
        by_status = CounterMetricFamily(
            f"{PREFIX}_recipients_finished", "Recipients that reached a final status.", labels=["status"]
        )
        for metric, n in sorted(recipients.items()):
            by_status.add_metric([metric.removeprefix("recipients.")], n or 0)
        yield by_status

        deliveries = GaugeMetricFamily(
            f"{PREFIX}_webhook_deliveries", "Outgoing webhook deliveries by status.", labels=["status"]
        )
        for status in WebhookDelivery.Status.values:
            deliveries.add_metric([status], dict(figures["deliveries"]).get(status, 0))
        yield deliveries
        attempts = CounterMetricFamily(
            f"{PREFIX}_webhook_attempts", "Outgoing webhook attempts by outcome.", labels=["outcome"]
        )
        for outcome in ("delivered", "failed"):
            attempts.add_metric([outcome], _redis_counter("webhook-attempts", outcome))
        yield attempts
        endpoints = GaugeMetricFamily(f"{PREFIX}_webhook_endpoints", "Outgoing webhook endpoints.", labels=["state"])
        active = dict(figures["endpoints"])
        endpoints.add_metric(["active"], active.get(True, 0))
        endpoints.add_metric(["disabled"], active.get(False, 0))
        yield endpoints
        imap_accounts = GaugeMetricFamily(
            f"{PREFIX}_imap_accounts", "Mailboxes the reply poller reads, by health.", labels=["state"]
        )
        imap_accounts.add_metric(["failing"], figures["imap_failing"])
        imap_accounts.add_metric(["healthy"], figures["imap_total"] - figures["imap_failing"])
        yield imap_accounts

        buffered: float
        dirty: float
        try:
            buffered = opens_pending()
            dirty = get_redis().scard(dirty_campaigns_key())
        except redis.RedisError:
            buffered = dirty = float("nan")
        yield GaugeMetricFamily(
            f"{PREFIX}_pixel_opens_buffered", "Opens the pixel buffered, not yet drained.", value=buffered
        )
        yield CounterMetricFamily(
            f"{PREFIX}_pixel_opens_drained", "Opens drained from the buffer into the database.",
            value=_redis_counter("opens-drained"),
        )  # fmt: skip
        yield GaugeMetricFamily(
            f"{PREFIX}_live_campaigns_waiting",
            "Campaigns changed, waiting for the live publisher's next tick.",
            value=dirty,
        )


def _allowed(request) -> bool:
    if settings.DEBUG:
        return True
    user = getattr(request, "user", None)
    if user is not None and user.is_active and user.is_staff:
        return True
    token = settings.METRICS_TOKEN
    given = request.META.get("HTTP_AUTHORIZATION", "")
    return bool(token) and given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode())


def metrics_view(request) -> HttpResponse:
    if not _allowed(request):
        response = HttpResponse(
            "Metrics need Authorization: Bearer <METRICS_TOKEN>.\n", status=401, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProductCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
